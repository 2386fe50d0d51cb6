"""A run on disk: ``results.json``, ``junit.xml`` and the artefacts, plus step percentiles.

::

    results/
      results.json          one record per VM x repeat x step, per-VM status, step statistics
      junit.xml             one testsuite per scenario, one testcase per VM (and repeat)
      artefacts/demo1/      screenshots, fetched files, console.log (every byte recorded),
                            events.jsonl (the VM's engine events)
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._run import RunReport, VmResult

__all__ = ["default_results_dir", "percentile", "step_statistics", "write_results"]

#: Console output in a failed testcase's system-out.
CONSOLE_EXCERPT = 4000


def default_results_dir(root: Path | str = "virtrio-results") -> Path:
    """A new folder under ``root`` named by the time (``20261202-143512``, ``-2`` if taken)."""
    base = Path(root) / datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method (an observed value)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def step_statistics(vms: Iterable[VmResult]) -> list[dict[str, Any]]:
    """Per step (in scenario order): count, min, mean, p50, p95, p99, max of the durations of
    its passed runs across VMs and repeats."""
    by_step: dict[tuple[int, str], list[float]] = {}
    for vm in vms:
        for record in vm.records:
            if record.status == "passed":
                by_step.setdefault((record.index, record.step), []).append(record.duration)
    out = []
    for (index, step), values in sorted(by_step.items()):
        out.append(
            {
                "index": index,
                "step": step,
                "count": len(values),
                "min": min(values),
                "mean": sum(values) / len(values),
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "p99": percentile(values, 99),
                "max": max(values),
            }
        )
    return out


def report_json(report: RunReport) -> dict[str, Any]:
    """results.json's content."""
    return {
        "scenario": report.scenario,
        "source": report.source,
        "passed": report.passed,
        "duration": round(report.duration, 6),
        "repeat": report.repeat,
        "parallel": report.parallel,
        "fail_fast": report.fail_fast,
        "vms": {
            name: {"status": vm.status, "duration": round(vm.duration, 6)}
            for name, vm in report.vms.items()
        },
        "records": [r.to_json() for vm in report.vms.values() for r in vm.records],
        "statistics": step_statistics(report.vms.values()),
        "results_dir": str(report.results_dir) if report.results_dir else None,
    }


def _junit(report: RunReport, path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

    suite = TestSuite(report.scenario)
    for name, vm in report.vms.items():
        iterations = sorted({r.iteration for r in vm.records if r.kind != "connect"}) or [1]
        for iteration in iterations:
            records = [r for r in vm.records if r.iteration == iteration]
            label = name if report.repeat == 1 else f"{name} #{iteration}"
            case = TestCase(label, classname=f"virtrio.{report.scenario}", time=round(
                sum(r.duration for r in records), 6))  # fmt: skip
            failed = next((r for r in records if r.status == "failed"), None)
            if failed is not None:
                problem = (
                    Failure if failed.error_class in ("StepFailed", "AssertionError") else Error
                )
                result = problem(
                    f"{'connect' if failed.index < 0 else f'steps[{failed.index}]'} "
                    f"({failed.step}): {failed.error_class}: {failed.error}",
                    failed.error_class or "Error",
                )
                result.text = (
                    f"{failed.where}\n{failed.error}" if failed.where else str(failed.error)
                )
                case.result = [result]
            elif vm.status == "cancelled" or any(r.status == "cancelled" for r in records):
                case.result = [Skipped("cancelled (another VM failed with --fail-fast)")]
            console = report.channel_output.get(name, {}).get("console.log", b"")
            lines = [f"{r.status:9} {r.duration:8.3f}s  {r.step}" for r in records]
            tail = console[-CONSOLE_EXCERPT:].decode("utf-8", "replace")
            out = "\n".join(lines) + (f"\n--- console (last {len(tail)} chars) ---\n{tail}")
            case.system_out = _xml_safe(out)
            suite.add_testcase(case)
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()  # type: ignore[no-untyped-call]
    # the VMs ran at once: the run's wall time, not the sum of the testcases'
    suite.time = xml.time = round(report.duration, 6)
    xml.write(str(path), pretty=True)


def _xml_safe(text: str) -> str:
    """Without the control characters XML 1.0 forbids (a console is full of them)."""
    return "".join(
        c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") else "?"
        for c in text
    )


def write_results(report: RunReport, folder: Path | str) -> Path:
    """Write results.json, junit.xml and the channel artefacts into ``folder`` (created)."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    report.results_dir = path
    for vm, files in report.channel_output.items():
        target = path / "artefacts" / vm
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (target / name).write_bytes(data)
    (path / "results.json").write_text(json.dumps(report_json(report), indent=2) + "\n")
    _junit(report, path / "junit.xml")
    return path
