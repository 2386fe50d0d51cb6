"""The one benchmark table: every line of issue 16's table (and the lines it says to keep, and
issue 14's GDB targets), each marked met or not met against its target, from the rows the
benchmarks wrote to ``benchmarks/results/*.json``; written also as
``benchmarks/results/latest.json``.

``make bench`` runs it last. Run alone: ``.venv/bin/python benchmarks/summary.py`` (``--strict``
exits 1 when a target is not met or a line has no result).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import RESULTS

__all__ = ["TABLE", "Line", "Target", "compose", "main", "render"]

Status = Literal["met", "not met", "no result"]


@attrs.frozen
class Target:
    """``ratio >= 1.25`` (virtrio's figure over the anchor's) or ``value <= 8`` (virtrio's own
    figure, in the line's unit)."""

    on: Literal["ratio", "value"]
    compare: Literal[">=", "<="]
    bound: float

    def met(self, value: float, ratio: float | None) -> bool:
        """Whether the figure meets the target (a ratio target without a ratio does not)."""
        subject = ratio if self.on == "ratio" else value
        if subject is None:
            return False
        return subject >= self.bound if self.compare == ">=" else subject <= self.bound

    def describe(self, unit: str, anchor: str) -> str:
        """``"≥ 1.25x qemu.qmp"`` or ``"≤ 8 KiB"``."""
        sign = "≥" if self.compare == ">=" else "≤"
        if self.on == "ratio":
            return f"{sign} {self.bound:g}x {anchor}"
        return f"{sign} {self.bound:g} {unit}"


@attrs.frozen
class Line:
    """One line of the table: its key (the benchmarks' ``Row.key``), what it measures, the
    benchmark that writes it, and its target."""

    key: str
    workload: str
    benchmark: str
    anchor: str
    target: Target
    #: the unit of an absolute target (a row brings its own unit)
    unit: str = ""


def _at_least(bound: float, on: Literal["ratio", "value"] = "ratio") -> Target:
    return Target(on, ">=", bound)


def _at_most(bound: float, on: Literal["ratio", "value"] = "ratio") -> Target:
    return Target(on, "<=", bound)


#: Issue 16's table, in its order, then the lines it says to keep ahead, then issue 14's GDB lines.
TABLE: tuple[Line, ...] = (
    Line(
        "qmp.concurrent",
        "QMP query-status, 16 concurrent callers",
        "qmp_latency",
        "qemu.qmp",
        _at_least(1.25),
    ),
    Line(
        "qmp.sequential",
        "QMP query-status, sequential median",
        "qmp_latency",
        "qemu.qmp",
        _at_most(0.8),
    ),
    Line("pty.cat1", "PTY: cat 100 MiB, 1 subscriber", "pty", "tmux", _at_least(1.2)),
    Line("pty.cat10", "PTY: 10 subscribers, each", "pty", "tmux", _at_least(1.0)),
    Line(
        "pty.idle_memory",
        "PTY: memory per idle session",
        "pty",
        "tmux",
        _at_most(8, "value"),
        "KiB",
    ),
    Line(
        "pty.echo",
        "PTY: input → echo round trip",
        "pty",
        "bare PTY",
        _at_most(0.15, "value"),
        "ms",
    ),
    Line(
        "xtransport.4k",
        "xtransport, 4 KiB frames (default)",
        "xtransport_throughput",
        "raw Trio socket",
        _at_least(0.6),
    ),
    Line(
        "messages.yamux",
        "messages over yamux",
        "xtransport_throughput",
        "raw Trio socket",
        _at_least(0.7),
    ),
    Line(
        "yamux.64streams",
        "yamux 64 streams virtrio↔virtrio",
        "mux_throughput",
        "raw socket",
        _at_least(0.8),
    ),
    Line(
        "libvirt.open_close",
        "libvirt open + close",
        "libvirt_calls",
        "bare libvirt-python",
        _at_most(1.5),
    ),
    Line(
        "libvirt.open_close_events",
        "libvirt open + close, with domain events (same work both sides)",
        "libvirt_calls",
        "bare libvirt-python",
        _at_most(1.5),
    ),
    Line(
        "yamux.go.1stream",
        "yamux 1 stream virtrio↔virtrio (keep ahead)",
        "mux_throughput",
        "Go↔Go",
        _at_least(1.0),
    ),
    Line(
        "yamux.go.64streams",
        "yamux 64 streams virtrio↔virtrio (keep ahead)",
        "mux_throughput",
        "Go↔Go",
        _at_least(1.0),
    ),
    Line(
        "spice.screenshot",
        "Spice connect + first frame + image (keep ahead)",
        "spice",
        "spicy-screenshot",
        _at_most(1.0),
    ),
    Line(
        "spice.fps",
        "Spice full-screen updates, 1024x768",
        "spice_fps",
        "spice-gtk",
        _at_least(60, "value"),
        "FPS",
    ),
    Line(
        "gdb.registers",
        "GDB register read (issue 14)",
        "backends",
        "raw socket",
        _at_most(1.2),
    ),
    Line(
        "gdb.memory4k",
        "GDB 4 KiB memory read (issue 14)",
        "backends",
        "raw socket",
        _at_most(1.2),
    ),
    Line(
        "gdb.breakpoint",
        "GDB breakpoint round trip (issue 14)",
        "backends",
        "raw socket",
        _at_most(1.2),
    ),
    Line(
        "spice.dropped",
        "Spice frames dropped from the framebuffer state",
        "spice_fps",
        "none",
        _at_most(0, "value"),
        "frames",
    ),
)


def load_rows(folder: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every row the benchmarks wrote to ``folder``, by key (a later file wins a clash)."""
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.json")):
        if path.name == "latest.json":
            continue
        document = json.loads(path.read_text())
        for row in document.get("rows", []):
            rows[row["key"]] = {**row, "written_at": document.get("written_at")}
    return rows


def compose(
    rows: Mapping[str, Mapping[str, Any]], table: Iterable[Line] = TABLE
) -> list[dict[str, Any]]:
    """The table's lines with their figures, ratio and status; rows of keys not in the table
    follow, without a target."""
    out = []
    for line in table:
        row = rows.get(line.key)
        entry: dict[str, Any] = {
            "key": line.key,
            "workload": line.workload,
            "benchmark": line.benchmark,
            "anchor": line.anchor,
        }
        if row is None:
            unit = line.unit
            entry.update(status="no result", value=None, anchor_value=None, ratio=None)
        else:
            unit = row.get("unit") or line.unit
            value, anchor_value = row["value"], row.get("anchor_value")
            ratio = value / anchor_value if anchor_value else None
            met = line.target.met(value, ratio)
            entry.update(
                {k: v for k, v in row.items() if k != "key"},
                anchor=row.get("anchor") or line.anchor,
                ratio=ratio,
                status="met" if met else "not met",
            )
            if (shown := _shown(line.target, value, ratio)) is not None:
                entry[f"{line.target.on}_shown"] = shown
        entry["target"] = line.target.describe(unit, entry["anchor"])
        out.append(entry)
    known = {line.key for line in table}
    for key, row in rows.items():
        if key not in known:
            anchor_value = row.get("anchor_value")
            ratio = row["value"] / anchor_value if anchor_value and row.get("value") else None
            out.append({**row, "ratio": ratio, "status": "no target", "target": ""})
    return out


#: How a ratio is shown: two decimals, or more where two would round it across its target.
_RATIO_SPECS = (".2f", ".3f", ".4f")


def _figure_specs(value: float) -> tuple[str, ...]:
    return (",.0f", ",.1f", ",.2f") if abs(value) >= 100 else (".3g", ".4g", ".5g")


def _shown(target: Target, value: float, ratio: float | None) -> str | None:
    """The figure ``target`` is on (the ratio, or virtrio's value) as the table shows it: with
    the fewest digits whose rounding agrees with the line's status, so 1.196 against "≥ 1.2x"
    reads 1.196, not a 1.20 marked not met. None without a ratio to show."""
    met = target.met(value, ratio)
    if target.on == "ratio":
        if ratio is None:
            return None
        subject, specs = ratio, _RATIO_SPECS
    else:
        subject, specs = value, _figure_specs(value)
    for spec in specs:
        text = format(subject, spec)
        rounded = float(text.replace(",", ""))
        if target.met(*((value, rounded) if target.on == "ratio" else (rounded, ratio))) == met:
            return text
    return format(subject, specs[-1])


def _figure(value: float | None, unit: str, shown: str | None = None) -> str:
    if value is None:
        return "—"
    text = shown or format(value, _figure_specs(value)[0])
    return f"{text} {unit}".strip()


def _cpu(entry: Mapping[str, Any]) -> str:
    cpu = entry.get("cpu_us_per_op") or {}
    parts = []
    for contender, sides in cpu.items():
        inner = ", ".join(f"{side} {us:.1f}" for side, us in sides.items())
        parts.append(f"{contender}: {inner}")
    return "; ".join(parts)


def render(entries: Iterable[Mapping[str, Any]]) -> str:
    """The table as text, one line per entry, then each line's CPU per operation."""
    entries = list(entries)
    head = f"{'workload':<50} {'virtrio':>14} {'anchor':>30} {'ratio':>7}  {'target':<24} status"
    lines = [head, "-" * len(head)]
    for e in entries:
        unit = e.get("unit", "")
        anchor = f"{e.get('anchor', '')} {_figure(e.get('anchor_value'), unit)}"
        ratio = ""
        if e.get("ratio") is not None:
            ratio = f"{e.get('ratio_shown') or format(e['ratio'], _RATIO_SPECS[0])}x"
        figure = _figure(e.get("value"), unit, e.get("value_shown"))
        lines.append(
            f"{e.get('workload', e['key']):<50} {figure:>14} "
            f"{anchor:>30} {ratio:>7}  {e.get('target', ''):<24} {e['status']}"
        )
    cpu_lines = [f"  {e['key']:<22} {text}" for e in entries if (text := _cpu(e))]
    if cpu_lines:
        lines += ["", "user+system CPU µs per operation, each side:", *cpu_lines]
    counts = {s: sum(e["status"] == s for e in entries) for s in ("met", "not met", "no result")}
    lines += ["", ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None, *, folder: Path = RESULTS) -> int:
    """Compose, print and write the table; 0 unless ``--strict`` and a line is not met."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 unless every line is met")
    args = parser.parse_args(argv)
    entries = compose(load_rows(folder))
    print(render(entries))
    folder.mkdir(parents=True, exist_ok=True)
    document = {"composed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "lines": entries}
    (folder / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {folder / 'latest.json'}")
    unmet = [e for e in entries if e["status"] in ("not met", "no result")]
    return 1 if args.strict and unmet else 0


if __name__ == "__main__":
    sys.exit(main())
