"""The executor on two real demo guests, booted once for the whole module's one test: the demo
scenario, the failure policies, repeats and percentiles, deadlines, Python scenarios, the
examples, the power-state machine and ``power: off via: acpi``; then `virtrio run` itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import trio
from hypothesis import settings

from virtrio.engine import default_fleet, open_engine
from virtrio.engine.scenario import (
    demo_scenario,
    load_scenario,
    parse_scenario,
    report_json,
    run_scenario,
    write_results,
)
from virtrio.testing import run_power_machine

EXAMPLES = Path(__file__).parents[3] / "docs" / "examples"


def fleet_of(vms: int):  # type: ignore[no-untyped-def]
    fleet = default_fleet(vms=vms)
    # the demo guest boots with -no-reboot; a reset must reset, for the power machine
    vms_ = tuple(
        attrs.evolve(v, qemu=attrs.evolve(v.qemu, extra_args=("-action", "reboot=reset")))
        for v in fleet.vms
    )
    return attrs.evolve(fleet, vms=vms_)


def failures(report) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(
        f"{r.vm} {r.step}: {r.error_class}: {r.error}"
        for vm in report.vms.values()
        for r in vm.records
        if r.status == "failed"
    )


async def test_scenarios_on_two_demo_guests(qemu_binary: str, tmp_path: Path) -> None:
    async with open_engine(fleet_of(2), workdir=tmp_path / "engine") as engine:
        # the demo scenario, both VMs at once
        report = await run_scenario(
            engine, demo_scenario(), artefacts=tmp_path / "r1" / "artefacts", connect_timeout=240
        )
        write_results(report, tmp_path / "r1")
        assert report.passed, failures(report)
        for vm in ("demo1", "demo2"):
            kinds = [(r.kind, r.status) for r in report.vms[vm].records]
            assert kinds[0] == ("connect", "passed")
            assert ("screenshot", "skipped") in kinds  # the demo guests have no Spice
            assert ("mux_echo", "passed") in kinds
            folder = tmp_path / "r1" / "artefacts" / vm
            assert f"typed on {vm}".encode() in (folder / "console.log").read_bytes()
            events = [
                json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()
            ]
            names = [e["name"] for e in events if e["kind"] == "qmp"]
            assert names.index("STOP") < names.index("RESUME")
        data = json.loads((tmp_path / "r1" / "results.json").read_text())
        assert data["passed"] is True
        assert {r["vm"] for r in data["records"]} == {"demo1", "demo2"}

        # default policy: every VM runs to its end; the failure names its step and class
        failing = parse_scenario(
            "- shell: '[ ${vm} = demo1 ]'\n- shell: 'echo after'\n", source="f.yaml"
        )
        report = await run_scenario(engine, failing)
        assert report.vms["demo1"].status == "passed"
        assert report.vms["demo2"].status == "failed"
        failure = report.vms["demo2"].failure
        assert failure is not None
        assert (failure.index, failure.error_class, failure.where) == (0, "StepFailed", "f.yaml:1")
        assert [r.kind for r in report.vms["demo2"].records] == ["connect", "shell"]
        assert not report.passed

        # --fail-fast: demo2 fails at once and cancels demo1 in its long step
        slow = parse_scenario("- shell: '[ ${vm} = demo1 ] && sleep 600'\n  timeout: 900\n")
        report = await run_scenario(engine, slow, fail_fast=True)
        assert report.vms["demo2"].status == "failed"
        assert report.vms["demo1"].status == "cancelled"
        assert report.vms["demo1"].records[-1].status == "cancelled"

        # a step's own deadline
        late = parse_scenario("- sleep: 30\n  timeout: 0.2\n")
        report = await run_scenario(engine, late, vms=["demo1"])
        (record,) = [r for r in report.vms["demo1"].records if r.kind == "sleep"]
        assert (record.status, record.error_class) == ("failed", "VirtrioTimeoutError")
        # a wait inside a step fails with its own message (what it waited for, the tail)
        never = parse_scenario(
            "- expect: {channel: console, pattern: never-printed}\n  timeout: 1\n"
        )
        report = await run_scenario(engine, never, vms=["demo2"])
        (record,) = [r for r in report.vms["demo2"].records if r.kind == "expect"]
        assert record.error_class == "VirtrioTimeoutError"
        assert "b'never\\\\-printed' not seen after byte" in (record.error or "")

        # --repeat with --parallel 1: one VM at a time, percentiles over VMs x repeats
        bench = parse_scenario("- qmp: query-status\n- shell: 'true'\n")
        report = await run_scenario(engine, bench, repeat=3, parallel=1)
        assert report.passed
        first, second = sorted(report.vms.values(), key=lambda v: v.started or 0)
        assert second.started is not None
        assert first.started is not None
        assert second.started >= first.started + first.duration
        stats = {s["step"]: s for s in report_json(report)["statistics"]}
        assert stats["qmp query-status"]["count"] == 6
        assert stats["shell true"]["count"] == 6
        for row in stats.values():
            assert row["min"] <= row["p50"] <= row["p95"] <= row["p99"] <= row["max"]

        # the examples (YAML and Python) pass on both
        for example in ("smoke.yaml", "console.py"):
            report = await run_scenario(
                engine, load_scenario(EXAMPLES / example), artefacts=tmp_path / example
            )
            assert report.passed, f"{example}: {failures(report)}"
        assert (
            (tmp_path / "smoke.yaml" / "demo2" / "smoke.txt")
            .read_text()
            .startswith("virtrio-smoke-demo2")
        )

        # the power-state machine, against a real guest: every rule checks status and events
        await run_power_machine(
            engine.vm("demo1"),
            settings(max_examples=3, stateful_step_count=5, deadline=None, database=None),
        )

        # power: off via acpi (last: the guests are gone after it). A guest that ignores the
        # ACPI button (demo2, its button handler killed) fails at the step's deadline, saying so
        deaf = parse_scenario(
            "- shell: 'kill $(cat /run/power-button.pid)'\n"
            "- power: off\n  via: acpi\n  timeout: 3\n",
            source="deaf.yaml",
        )
        report = await run_scenario(engine, deaf, vms=["demo2"])
        failure = report.vms["demo2"].failure
        assert failure is not None, "the guest powered off without its button handler"
        assert (failure.where, failure.error_class) == ("deaf.yaml:2", "VirtrioTimeoutError")
        assert failure.error == (
            "power off via acpi: no SHUTDOWN event within 3.0s after the ACPI power button "
            "(QMP system_powerdown): the guest ignores it (no ACPI button driver, or nothing "
            "acting on the button)"
        )
        assert (await engine.vm("demo2").qmp.query_status()).status == "running"
        # the demo guest's own handler: the button powers it off. The power machine may have
        # just reset demo1: its agent answers once the rebooted guest's handler is in place
        acpi = parse_scenario(
            "- shell: 'test -s /run/power-button.pid'\n  timeout: 120\n"
            "- power: off\n  via: acpi\n  timeout: 120\n"
        )
        report = await run_scenario(engine, acpi, vms=["demo1"])
        assert report.passed, failures(report)
        (record,) = [r for r in report.vms["demo1"].records if r.kind == "power"]
        assert json.loads(record.output) == {
            "event": "SHUTDOWN",
            "data": {"guest": True, "reason": "guest-shutdown"},
            "via": "acpi",
        }
        with trio.fail_after(60):
            assert await engine.qemu("demo1").wait() == 0


BARE_FLEET = """\
vms:
  - id: bare1
    tags: [bare]
    qemu: {machine: none}
    channels: {qmp: {kind: qmp}}
  - id: bare2
    qemu: {machine: none}
    channels: {qmp: {kind: qmp}}
"""


def test_virtrio_run_cli(qemu_binary: str, tmp_path: Path) -> None:
    # QEMUs that run no guest code (ready in milliseconds): the CLI's plumbing, not the guests
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(BARE_FLEET)
    scenario = tmp_path / "quick.yaml"
    scenario.write_text("- qmp: query-status\n  set: {state: '\"status\": \"(\\w+)\"'}\n"
                        "- assert: {value: '${state}', in: [running, prelaunch]}\n")  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "virtrio", "run", *args],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    done = run(str(scenario), "--fleet", str(fleet), "--json", "--results", str(tmp_path / "ok"))
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["passed"] is True
    assert sorted(data["vms"]) == ["bare1", "bare2"]
    assert [r["kind"] for r in data["records"] if r["vm"] == "bare1"] == [
        "connect",
        "qmp",
        "assert",
    ]
    assert (tmp_path / "ok" / "junit.xml").exists()
    assert (tmp_path / "ok" / "artefacts" / "bare1" / "events.jsonl").exists()

    # a failing VM makes the exit status 1; --tag selects; no live table without a terminal
    scenario.write_text("- assert: {value: '${vm}', equals: bare2}\n")
    done = run(str(scenario), "--fleet", str(fleet), "--tag", "bare", "--results",
               str(tmp_path / "bad"))  # fmt: skip
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith("bare1 failed (2 steps, ")
    assert lines[0].endswith(
        "): assert value=${vm} equals=bare2: StepFailed: 'bare1' equals 'bare2': false"
    )
    assert lines[1] == f"results: {tmp_path / 'bad'}"
    data = json.loads((tmp_path / "bad" / "results.json").read_text())
    assert list(data["vms"]) == ["bare1"]
    assert data["records"][-1]["error"]["class"] == "StepFailed"

    # problems in the scenario: every one, before anything runs
    scenario.write_text("- shel: x\n- sleep: -1\n")
    done = run(str(scenario), "--check")
    assert done.returncode == 1
    assert f"{scenario}:1: steps[0]: unknown step 'shel'" in done.stderr
    assert f"{scenario}:2: steps[1].sleep: seconds" in done.stderr


def test_virtrio_run_on_a_terminal_shows_progress(qemu_binary: str, tmp_path: Path) -> None:
    import os
    import pty

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(BARE_FLEET)
    scenario = tmp_path / "quick.yaml"
    # a long step: its row's elapsed time keeps counting while it runs
    scenario.write_text("- qmp: query-status\n- sleep: 2\n- qmp: query-version\n")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "virtrio", "run", str(scenario), "--fleet", str(fleet),
         "--vms", "bare2", "--repeat", "2", "--results", str(tmp_path / "out")],
        stdin=secondary, stdout=secondary, stderr=secondary, env={**os.environ, "COLUMNS": "120"},
    )  # fmt: skip
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert process.wait(timeout=300) == 0, output[-2000:]
    text = output.decode("utf-8", "replace")
    assert "bare2" in text
    assert "bare1" not in text  # --vms selects
    assert "passed" in text
    assert "step durations (ms)" in text  # the percentiles of --repeat
    assert "p95" in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    shown = [float(s) for s in re.findall(r"bare2\s+running\s+sleep 2\s+(\d+\.\d)s", plain)]
    assert shown, plain[-2000:]
    # redrawn during the step (4 times a second), not only when a step starts or ends
    assert len(set(shown)) >= 4, shown
    assert f"results: {tmp_path / 'out'}" in text.replace("\r\n", "\n").replace("\n", "")
