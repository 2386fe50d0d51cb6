"""The benchmark table composer (benchmarks/summary.py) on sample rows: no benchmark runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks._measure import Cpu, Meter, Row, Spread, own_cpu, process_cpu, write_results
from benchmarks.summary import TABLE, compose, main, render


def sample_rows(folder: Path) -> None:
    write_results(
        "qmp_latency",
        [
            Row(
                "qmp.concurrent",
                8000.0,
                "cmd/s",
                "qemu.qmp",
                6000.0,
                cpu_us={"virtrio": {"virtrio": 40.0, "qemu": 20.0}},
                runs=Spread.of([7900.0, 8000.0, 8100.0]),
            ),
            Row("qmp.sequential", 250.0, "µs", "qemu.qmp", 290.0),
        ],
        folder=folder,
    )
    write_results(
        "pty",
        [
            Row("pty.idle_memory", 6.5, "KiB", "tmux", 4.8),
            Row("pty.echo", 0.2, "ms", "bare PTY", 0.07),
            Row("pty.extra", 1.0, "x"),
        ],
        folder=folder,
    )


def test_every_line_is_marked_against_its_target(tmp_path: Path) -> None:
    sample_rows(tmp_path)
    assert main([], folder=tmp_path) == 0
    document = json.loads((tmp_path / "latest.json").read_text())
    lines = {line["key"]: line for line in document["lines"]}
    # a ratio target above (8000 / 6000 = 1.33 >= 1.25) and below (250 / 290 = 0.86 > 0.8)
    assert lines["qmp.concurrent"]["status"] == "met"
    assert lines["qmp.concurrent"]["ratio"] == pytest.approx(8000 / 6000)
    assert lines["qmp.concurrent"]["runs"]["low"] == 7900.0
    assert lines["qmp.concurrent"]["cpu_us_per_op"]["virtrio"]["qemu"] == 20.0
    assert lines["qmp.sequential"]["status"] == "not met"
    # absolute targets use virtrio's own figure, whatever the anchor's
    assert lines["pty.idle_memory"]["status"] == "met"
    assert lines["pty.echo"]["status"] == "not met"
    # a line nobody measured is there, and says so; a row without a line is kept
    assert lines["libvirt.open_close"]["status"] == "no result"
    assert lines["pty.extra"]["status"] == "no target"
    assert [line["key"] for line in document["lines"][: len(TABLE)]] == [t.key for t in TABLE]


def test_strict_fails_when_a_target_is_missed(tmp_path: Path) -> None:
    sample_rows(tmp_path)
    assert main(["--strict"], folder=tmp_path) == 1


def test_latest_json_is_not_read_back_as_results(tmp_path: Path) -> None:
    sample_rows(tmp_path)
    main([], folder=tmp_path)
    main([], folder=tmp_path)
    lines = json.loads((tmp_path / "latest.json").read_text())["lines"]
    assert len(lines) == len(TABLE) + 1


def test_a_ratio_below_its_target_is_not_met() -> None:
    rows = {"qmp.concurrent": {"key": "qmp.concurrent", "value": 5000.0, "anchor_value": 6000.0}}
    [entry] = [e for e in compose(rows) if e["key"] == "qmp.concurrent"]
    assert entry["status"] == "not met"
    assert "1.25x qemu.qmp" in entry["target"]


def test_meter_reads_this_process_and_a_peer() -> None:
    meter = Meter(peers={"peer": os.getpid()})  # this process read through /proc
    with meter:
        sum(i * i for i in range(300_000))  # some CPU
    usage = meter.usage(operations=10)
    assert usage.cpu["virtrio"].total > 0
    assert usage.wall > 0
    assert set(usage.cpu_us_per_op()) == {"virtrio", "peer"}
    assert usage.cpu_us_per_op()["virtrio"] == pytest.approx(usage.cpu["virtrio"].total * 1e5)
    # /proc counts whole clock ticks of the same clock: never more than getrusage's reading
    assert process_cpu(os.getpid()).total <= own_cpu().total + 0.02
    assert (Cpu(1.0, 2.0) - Cpu(0.5, 0.5)).total == 2.0


def test_a_figure_is_never_shown_rounded_across_its_target() -> None:
    """1.196 against "≥ 1.2x" is not met, and reads 1.196, not 1.20; 1.204 reads 1.20, met.
    An absolute target likewise: 0.1504 ms against "≤ 0.15 ms" reads 0.1504."""
    rows = {
        "pty.cat1": {"key": "pty.cat1", "value": 1.196, "unit": "MB/s", "anchor_value": 1.0},
        "pty.cat10": {"key": "pty.cat10", "value": 1.204, "unit": "MB/s", "anchor_value": 1.2},
        "pty.echo": {"key": "pty.echo", "value": 0.1504, "unit": "ms", "anchor_value": 0.07},
    }
    text = render(compose(rows))
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    [cat1] = [line for key, line in lines.items() if key.startswith("PTY: cat")]
    [echo] = [line for key, line in lines.items() if key.startswith("PTY: input")]
    assert "1.196x" in cat1
    assert cat1.endswith("not met")
    assert "0.1504 ms" in echo
    assert echo.endswith("not met")
    entries = {e["key"]: e for e in compose(rows)}
    assert entries["pty.cat10"]["ratio_shown"] == "1.00"
    assert entries["pty.cat10"]["status"] == "met"
