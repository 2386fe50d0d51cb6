"""The QEMU adapter's rows of benchmarks/backends.py: instance creation and snapshots.

Rows (each the median of N runs, with the spread min..max, and CPU per operation: this
process's user+system time plus QEMU's, from /proc/PID/stat; a mean, since /proc counts in
clock ticks of 10 ms):

* instance create to first instruction: ``open_instance`` (work directory, snapshot image)
  -> ``upload_program`` -> ``start_program(halted=True)`` (QEMU started, console, QMP and GDB
  connected) -> ``step()`` (the first instruction executed and the PC read back);
* snapshot create/restore with QMP ``snapshot-save``/``snapshot-load`` jobs on the instance's
  qcow2 (what the adapter uses), in place;
* snapshot create/restore by migration to a file (``migrate`` to ``exec:cat > FILE``; restore =
  a new QEMU with ``-incoming defer`` + ``migrate-incoming`` and its console, QMP and GDB
  connected again, as an adapter would have to).

The guest is the x86_64 bare-metal test program (tests/peers/programs) on ``pc`` with 64 MiB,
stopped at ``tick``. Run by ``.venv/bin/python benchmarks/backends.py`` (this module prints
nothing by itself).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.programs import build_program  # noqa: E402
from virtrio.engine.backends import (  # noqa: E402
    Breakpoint,
    ConsoleBuffer,
    QemuBackend,
    QemuInstance,
    StartOptions,
    board_template,
)
from virtrio.engine.backends._qemu_run import QemuRun, RunSpec, serve_run  # noqa: E402
from virtrio.engine.backends._snapshots import migrate_to_file  # noqa: E402

N_CREATE = 15
N_SNAPSHOT = 15
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    """A live process's user+system CPU seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def row(name: str, samples: list[float], cpu: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    return (
        f"{name:<48} median {statistics.median(ms):8.2f} ms  "
        f"(min {ms[0]:.2f}, max {ms[-1]:.2f}, n={len(ms)})  "
        f"CPU {statistics.fmean(cpu) * 1000:7.2f} ms/op"
    )


async def timed(
    operation: Callable[[], Awaitable[object]], pids: Callable[[], list[int]]
) -> tuple[float, float]:
    cpu0 = cpu_self() + sum(cpu_of(p) for p in pids())
    start = time.perf_counter()
    await operation()
    wall = time.perf_counter() - start
    return wall, cpu_self() + sum(cpu_of(p) for p in pids()) - cpu0


async def create_to_first_instruction(folder: Path, elf: bytes) -> tuple[list[float], list[float]]:
    backend = QemuBackend()
    node = board_template("pc", ram_size=64 << 20).nodes[0]
    walls, cpus = [], []
    for index in range(N_CREATE):
        cpu0 = cpu_self()
        start = time.perf_counter()
        async with backend.open_instance(
            node, instance_id=f"c{index}", workdir=folder / f"c{index}"
        ) as m:
            pid = await m.upload_program(elf)
            await m.start_program(pid, StartOptions(halted=True))
            await m.step()
            walls.append(time.perf_counter() - start)
            assert m._run is not None
            cpus.append(cpu_self() - cpu0 + cpu_of(m._run.process.pid))
    return walls, cpus


async def stopped_at_tick(machine: QemuInstance, elf: bytes) -> None:
    pid = await machine.upload_program(elf)
    await machine.set_breakpoint(Breakpoint(symbol="tick"))
    await machine.start_program(pid)
    await machine.wait_stop(timeout=30)


async def snapshot_jobs(folder: Path, elf: bytes) -> list[str]:
    node = board_template("pc", ram_size=64 << 20).nodes[0]
    async with QemuBackend().open_instance(node, instance_id="s", workdir=folder / "s") as m:
        await stopped_at_tick(m, elf)
        assert m._run is not None
        qemu = m._run.process.pid
        saves, save_cpu, loads, load_cpu = [], [], [], []
        tags = []
        for _ in range(N_SNAPSHOT):
            tag: list[str] = []

            async def save(tag: list[str] = tag) -> None:
                tag.append(await m.create_snapshot())

            wall, cpu = await timed(save, lambda: [qemu])
            saves.append(wall)
            save_cpu.append(cpu)
            tags.append(tag[0])
        for tag_ in tags:
            wall, cpu = await timed(lambda t=tag_: m.restore_snapshot(t), lambda: [qemu])
            loads.append(wall)
            load_cpu.append(cpu)
        size = (folder / "s" / "snapshots.qcow2").stat().st_size
    return [
        row("snapshot create (snapshot-save job, qcow2)", saves, save_cpu),
        row("snapshot restore (snapshot-load job, in place)", loads, load_cpu),
        f"  (qcow2 after {N_SNAPSHOT} snapshots: {size / 1e6:.1f} MB)",
    ]


async def snapshot_migration(folder: Path, elf: bytes) -> list[str]:
    # QEMU 7.2 migrates a VM once (then it sits in postmigrate), so each sample is a fresh
    # instance run to tick, saved, then restored into a new QEMU. It is saved running (the
    # migration pauses it): a state saved while GDB holds the CPU carries the run state
    # 'debug', which the destination cannot enter from 'inmigrate' (QEMU 7.2 aborts).
    node = board_template("pc", ram_size=64 << 20).nodes[0]
    backend = QemuBackend()
    saves, save_cpu, loads, load_cpu = [], [], [], []
    for index in range(N_SNAPSHOT):
        path = folder / f"state-{index}.mig"
        work = folder / f"m{index}"
        async with backend.open_instance(node, instance_id="m", workdir=work) as m:
            await stopped_at_tick(m, elf)
            await m.remove_breakpoint(Breakpoint(symbol="tick"))
            await m.continue_()
            assert m._run is not None
            assert m.run_spec is not None
            pids = [m._run.process.pid]
            wall, cpu = await timed(lambda p=path: migrate_to_file(m.qmp, p), lambda p=pids: p)
            saves.append(wall)
            save_cpu.append(cpu)
            argv = m.run_spec.argv  # the QEMU's command line, to start it again
        spec = RunSpec(argv, 0, work, work / "restore.log", incoming=path)
        async with trio.open_nursery() as nursery:
            cpu0 = cpu_self()
            start = time.perf_counter()
            run: QemuRun = await nursery.start(serve_run, spec, ConsoleBuffer(), _no_breakpoints)
            loads.append(time.perf_counter() - start)
            load_cpu.append(cpu_self() - cpu0 + cpu_of(run.process.pid))
            run.stop.set()
    size = (folder / "state-0.mig").stat().st_size
    return [
        row("snapshot create (migrate to file)", saves, save_cpu),
        row("snapshot restore (new QEMU, -incoming, reconnect)", loads, load_cpu),
        f"  (one migration file: {size / 1e6:.1f} MB)",
    ]


async def _no_breakpoints(gdb: object) -> None:
    return None


async def adapter_rows() -> list[str]:
    """The QEMU adapter's rows."""
    elf = build_program("x86_64").elf.read_bytes()
    with tempfile.TemporaryDirectory(prefix="virtrio-bench-") as tmp:
        folder = Path(tmp)
        walls, cpus = await create_to_first_instruction(folder, elf)
        rows = [row("instance create to first instruction", walls, cpus)]
        rows += await snapshot_jobs(folder, elf)
        rows += await snapshot_migration(folder, elf)
    return rows
