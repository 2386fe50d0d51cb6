"""The Spice steps against QEMU's own Spice server on a demo guest launched with ``spice: true``
(booted once for the module's first test): the demo scenario's screenshot, ``keys:``/``type:``
through Spice, ``wait_screen`` on a change and on a reference PNG captured from the same guest,
its timeout artefacts; then ``power: off``. Then ``virtrio run --spice`` keeps the demo
scenario's screenshot in its results.

The demo guest's kernel has no VGA console (it boots through PVH), so the test draws on the
screen itself: text-mode characters written into the VGA memory at 0xb8000 through /dev/mem.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio
import trio.testing
from junitparser import JUnitXml

from tests.engine.scenario.test_run import failures
from virtrio.channels.spice import Rect
from virtrio.engine import default_fleet, open_engine
from virtrio.engine.scenario import demo_scenario, load_scenario, parse_scenario, run_scenario
from virtrio.engine.scenario._image import decode_png

#: Text row 10, column 10 of the 80x25 text mode (9x16 pixel cells on a 720x400 screen).
ROW, COL = 10, 10
REGION = [COL * 9, ROW * 16, 4 * 9, 16]


#: A cell the test bumps after a drawing, to know the drawing has reached the screen.
MARK_ROW, MARK_COL = 12, 10
MARK = Rect(MARK_COL * 9, MARK_ROW * 16, MARK_COL * 9 + 9, MARK_ROW * 16 + 16)


def draw(text: str, row: int = ROW, col: int = COL, attribute: int = 0x1F) -> str:
    """A guest shell command that puts ``text`` at ``row``, ``col`` of the text screen (a
    cell, character and colour, per write)."""
    cells = "".join(f"{c}\\{attribute:03o}" for c in text)
    cell = (0xB8000 + (row * 80 + col) * 2) // 2
    return f"printf '{cells}' | dd of=/dev/mem bs=2 seek={cell} conv=notrunc 2>/dev/null"


async def show(vm: Any, text: str, tick: int) -> None:
    """Draw ``text``, then bump the mark cell, and wait for the mark to change on the screen:
    QEMU redraws every changed cell of the text screen in one refresh, in order, so once the
    mark's change has arrived the whole text has too."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(vm.spice.wait_screen_change, region=MARK, timeout=30))
        await trio.testing.wait_all_tasks_blocked()
        await vm.qga.shell(f"{draw(text)}; {draw(str(tick % 10), MARK_ROW, MARK_COL)}")


async def run_on(engine: Any, scenario: Any, folder: Path) -> Any:
    return await run_scenario(engine, scenario, artefacts=folder, connect_timeout=240)


async def test_spice_steps_on_a_demo_guest_with_spice(qemu_binary: str, tmp_path: Path) -> None:
    async with open_engine(default_fleet(vms=1, spice=True), workdir=tmp_path / "e") as engine:
        vm = engine.vm("demo1")
        assert vm.channel_kinds()["spice"] == "spice"

        # the demo scenario: its screenshot is taken now that Spice is on
        report = await run_on(engine, demo_scenario(), tmp_path / "demo")
        assert report.passed, failures(report)
        kinds = {r.kind: r.status for r in report.vms["demo1"].records}
        assert kinds["screenshot"] == "passed"
        shot = decode_png((tmp_path / "demo" / "demo1" / "screen.png").read_bytes())
        assert (shot.width, shot.height) == (720, 400)  # SeaBIOS's text mode

        # keys and text through Spice's inputs channel reach the guest's keyboard (the demo
        # scenario routed tty1 to the serial console)
        keys = parse_scenario(
            "- type: 'via spice'\n  via: spice\n- keys: shift-x\n  via: spice\n"
            "- keys: enter\n  via: spice\n"
            "- expect: {channel: console, pattern: via spiceX}\n  timeout: 30\n"
        )
        report = await run_on(engine, keys, tmp_path / "keys")
        assert report.passed, failures(report)

        # wait_screen: change of a region, made after the wait began
        change = parse_scenario(f"- wait_screen: {{change: true, region: {REGION}}}\n")
        async with trio.open_nursery() as nursery:
            reports: list[Any] = []

            async def wait_change() -> None:
                reports.append(await run_on(engine, change, tmp_path / "change"))

            nursery.start_soon(wait_change)
            await trio.testing.wait_all_tasks_blocked()
            await vm.qga.shell(draw("VIRT"))
        assert reports[0].passed, failures(reports[0])

        # a reference captured from this guest: the whole screen, and the region alone
        await show(vm, "VIRT", 1)
        folder = tmp_path / "scenarios"
        folder.mkdir()
        (folder / "screen.png").write_bytes(await vm.spice.screenshot())
        screen = decode_png((folder / "screen.png").read_bytes())
        (folder / "virt.png").write_bytes(screen.crop(*REGION).to_png())
        (folder / "match.yaml").write_text(
            f"- wait_screen: {{region: {REGION}, reference: virt.png}}\n"
            f"- wait_screen: {{region: {REGION}, reference: screen.png}}\n"
        )
        report = await run_on(engine, load_scenario(folder / "match.yaml"), tmp_path / "m")
        assert report.passed, failures(report)

        # one letter off: 0 tolerance times out with both images saved; 50% passes
        await show(vm, "VIRX", 2)
        (folder / "tolerant.yaml").write_text(
            f"- wait_screen: {{region: {REGION}, reference: virt.png, tolerance: 0.5}}\n"
            f"- wait_screen: {{region: {REGION}, reference: virt.png}}\n  timeout: 2\n"
        )
        report = await run_on(engine, load_scenario(folder / "tolerant.yaml"), tmp_path / "t")
        records = report.vms["demo1"].records
        assert [r.status for r in records] == ["passed", "passed", "failed"]
        failed = records[-1]
        assert failed.error_class == "VirtrioTimeoutError"
        assert f"region {REGION} did not match virt.png" in (failed.error or "")
        assert "(tolerance 0.0%)" in (failed.error or "")
        saved = tmp_path / "t" / "demo1"
        assert decode_png((saved / "wait_screen1-screen.png").read_bytes()).width == 720
        diff = decode_png((saved / "wait_screen1-diff.png").read_bytes())
        assert (diff.width, diff.height) == (REGION[2], REGION[3])
        assert b"\xff\x00\x00" in diff.rgb  # the differing pixels, in red

        # the region comes to match while the step waits
        async with trio.open_nursery() as nursery:
            reports = []

            async def wait_match() -> None:
                scenario = load_scenario(folder / "match.yaml")
                reports.append(await run_on(engine, scenario, tmp_path / "m2"))

            nursery.start_soon(wait_match)
            await trio.testing.wait_all_tasks_blocked()
            await vm.qga.shell(draw("VIRT"))
        assert reports[0].passed, failures(reports[0])

        # power: off (last: the guest is gone after it); the agent powers it down
        off = parse_scenario("- power: off\n  timeout: 60\n")
        report = await run_on(engine, off, tmp_path / "off")
        assert report.passed, failures(report)
        (record,) = [r for r in report.vms["demo1"].records if r.kind == "power"]
        assert '"via": "agent"' in record.output
        assert '"event": "SHUTDOWN"' in record.output
        with trio.fail_after(60):
            assert await engine.qemu("demo1").wait() == 0


def test_virtrio_run_with_spice_keeps_the_demo_screenshot(qemu_binary: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "virtrio", "run", "--vms", "1", "--spice",
         "--results", str(results)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.startswith("demo1 passed (")
    assert done.stdout.splitlines()[-1] == f"results: {results}"
    # the demo scenario's screenshot, taken through Spice: a PNG of SeaBIOS's text mode
    shot = results / "artefacts" / "demo1" / "screen.png"
    image = decode_png(shot.read_bytes())
    assert (image.width, image.height) == (720, 400)
    data = json.loads(shot.parents[2].joinpath("results.json").read_text())
    assert data["passed"] is True
    (record,) = [r for r in data["records"] if r["kind"] == "screenshot"]
    assert (record["vm"], record["status"], record["output"]) == ("demo1", "passed", str(shot))
    suites = list(JUnitXml.fromfile(str(results / "junit.xml")))
    assert [(s.name, s.tests, s.failures, s.errors) for s in suites] == [("demo", 1, 0, 0)]
    assert [case.name for case in suites[0]] == ["demo1"]
