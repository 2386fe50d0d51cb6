"""The measuring pieces every benchmark shares: CPU time per operation of each side, runs and
their spread, and the results file each benchmark writes for ``benchmarks/summary.py``.

Both ends of every benchmark share two cores with whatever else runs on the machine, so wall
time alone says little; CPU time per operation says what each side spent, whoever else was
running. Our own process is read with ``getrusage`` (all its threads, so the worker threads a
libvirt call hops to count), a peer (QEMU, libvirtd, a daemon) from ``/proc/PID/stat`` (user and
system time of all its threads, in clock ticks of 10 ms: measure at least a second of work per
figure, or sum several rounds).

>>> meter = Meter(peers={"qemu": qemu.pid})          # doctest: +SKIP
>>> with meter:                                      # doctest: +SKIP
...     run_the_workload()
>>> meter.usage(operations=4000).cpu_us_per_op()     # doctest: +SKIP
{'virtrio': 41.3, 'qemu': 18.0}

A benchmark reports its table lines as :class:`Row` objects with :func:`write_results`; the
keys are those of ``summary.TABLE``, which holds each line's target. Run a benchmark alone and
``benchmarks/summary.py`` shows the table with whatever results are there.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = [
    "RESULTS",
    "Cpu",
    "Meter",
    "Row",
    "Spread",
    "Usage",
    "own_cpu",
    "process_cpu",
    "write_results",
]

#: Where each benchmark writes ``NAME.json`` and the summary ``latest.json``.
RESULTS = Path(__file__).resolve().parent / "results"

_TICK = os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Cpu:
    """User and system CPU seconds (a reading, or the difference of two)."""

    user: float
    system: float

    @property
    def total(self) -> float:
        """User plus system seconds."""
        return self.user + self.system

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.user - other.user, self.system - other.system)

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(self.user + other.user, self.system + other.system)


def own_cpu() -> Cpu:
    """CPU time of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Cpu(usage.ru_utime, usage.ru_stime)


def process_cpu(pid: int) -> Cpu:
    """CPU time of process ``pid`` so far (every thread, from ``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    return Cpu(int(fields[11]) / _TICK, int(fields[12]) / _TICK)


@attrs.frozen
class Usage:
    """What one measured stretch cost: wall seconds, and CPU per side over ``operations``."""

    wall: float
    cpu: Mapping[str, Cpu]
    operations: int

    @property
    def rate(self) -> float:
        """Operations per wall-clock second."""
        return self.operations / self.wall

    def cpu_us_per_op(self) -> dict[str, float]:
        """User+system CPU microseconds per operation, per side."""
        return {side: cpu.total / self.operations * 1e6 for side, cpu in self.cpu.items()}

    def __add__(self, other: Usage) -> Usage:
        sides = self.cpu.keys() | other.cpu.keys()
        zero = Cpu(0.0, 0.0)
        return Usage(
            self.wall + other.wall,
            {s: self.cpu.get(s, zero) + other.cpu.get(s, zero) for s in sorted(sides)},
            self.operations + other.operations,
        )


class Meter:
    """Measures a stretch of work: wall time, this process's CPU (as side ``own``) and each
    peer's (by pid). Use as ``with meter: ...`` then :meth:`usage`; a meter may be reused,
    each ``with`` replacing the last reading.
    """

    def __init__(self, peers: Mapping[str, int] | None = None, *, own: str = "virtrio") -> None:
        self.own = own
        self.peers = dict(peers or {})
        self._start: tuple[float, dict[str, Cpu]] | None = None
        self._elapsed: tuple[float, dict[str, Cpu]] | None = None

    def _read(self) -> dict[str, Cpu]:
        readings = {self.own: own_cpu()}
        for side, pid in self.peers.items():
            readings[side] = process_cpu(pid)
        return readings

    def __enter__(self) -> Meter:
        self._start = (time.perf_counter(), self._read())
        return self

    def __exit__(self, *exc_info: object) -> None:
        cpu, wall = self._read(), time.perf_counter()
        assert self._start is not None, "exit without enter"
        start_wall, start_cpu = self._start
        self._elapsed = (wall - start_wall, {s: cpu[s] - start_cpu[s] for s in cpu})

    def usage(self, operations: int) -> Usage:
        """The last stretch's cost, for ``operations`` operations."""
        assert self._elapsed is not None, "usage() before the measured block ran"
        wall, cpu = self._elapsed
        return Usage(wall, cpu, operations)


@attrs.frozen
class Spread:
    """One figure measured over several runs: each run's value, the kept one, and the range."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The spread of ``values`` (at least one)."""
        kept = tuple(values)
        if not kept:
            raise ValueError("a spread needs at least one run")
        return cls(kept)

    @property
    def median(self) -> float:
        """The median run."""
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        """The lowest run."""
        return min(self.values)

    @property
    def high(self) -> float:
        """The highest run."""
        return max(self.values)

    def describe(self, fmt: str = ".3g") -> str:
        """``"median (low..high, N runs)"``."""
        return f"{self.median:{fmt}} ({self.low:{fmt}}..{self.high:{fmt}}, {len(self.values)} runs)"

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to the results files."""
        return {
            "runs": len(self.values),
            "values": list(self.values),
            "median": self.median,
            "low": self.low,
            "high": self.high,
        }


@attrs.frozen
class Row:
    """One line of the summary table, as a benchmark measured it.

    Args:
        key: the line's key in ``summary.TABLE`` (``"qmp.concurrent"``).
        value: virtrio's figure, in ``unit``.
        unit: ``"cmd/s"``, ``"MB/s"``, ``"ms"``, ``"KiB"``, ``"FPS"``, ...
        anchor: what it is compared with (``"qemu.qmp"``), or None for an absolute target.
        anchor_value: the anchor's figure in the same run and unit.
        cpu_us: user+system CPU µs per operation of each side, per contender:
            ``{"virtrio": {"virtrio": 41.0, "qemu": 18.0}, "qemu.qmp": {...}}``.
        runs: every run's value of virtrio's figure (and the anchor's), for the spread.
        note: anything the reader of the table should know.
    """

    key: str
    value: float
    unit: str
    anchor: str | None = None
    anchor_value: float | None = None
    cpu_us: Mapping[str, Mapping[str, float]] = attrs.field(factory=dict)
    runs: Spread | None = None
    anchor_runs: Spread | None = None
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        """The JSON form written to the results files."""
        return {
            "key": self.key,
            "value": self.value,
            "unit": self.unit,
            "anchor": self.anchor,
            "anchor_value": self.anchor_value,
            "cpu_us_per_op": {k: dict(v) for k, v in self.cpu_us.items()},
            "runs": None if self.runs is None else self.runs.as_json(),
            "anchor_runs": None if self.anchor_runs is None else self.anchor_runs.as_json(),
            "note": self.note,
        }


def write_results(benchmark: str, rows: Iterable[Row], *, folder: Path = RESULTS) -> Path:
    """Write ``rows`` to ``folder/BENCHMARK.json`` (replacing the last run's) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{benchmark}.json"
    document = {
        "benchmark": benchmark,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": [row.as_json() for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path
