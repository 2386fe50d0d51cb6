"""Demo guest boot: where the time from spawn to a guest agent answering goes.

Each boot is timed in stages, from this process's clock at the moment each thing is seen:
spawn → QMP greeting → first serial byte (the kernel's first console output) → ``ports:`` line
(``/init`` ran and loaded the virtio modules) → ``ready`` line → ``guest-ping`` answered. QEMU's
CPU time per boot (user+system, from ``/proc``) is the figure that load on the machine does not
inflate. ``--printk`` adds ``printk.time=1 ignore_loglevel`` to the kernel command line and
prints the guest's own timestamps of the slowest steps before ``/init`` (use it to attribute,
not to time: printing the log costs boot time itself).

    .venv/bin/python benchmarks/guest_boot.py --runs 3 --guests 1,2,4
    .venv/bin/python benchmarks/guest_boot.py --runs 1 --guests 1 --printk
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

import trio.lowlevel
from _measure import Row, Spread, process_cpu, write_results

from virtrio.engine.guest import QemuMachine, build_guest, plan_launch

STAGES = ("qmp", "serial", "init", "ready", "agent")
_PRINTK = re.compile(rb"\[\s*(\d+\.\d+)\] (.*)")


async def _read_until(
    stream: trio.SocketStream, marks: dict[bytes, tuple[float, float]], t0: float, pid: int
) -> bytes:
    """Read the console, stamping (wall, QEMU CPU) the first byte and each marker line."""
    seen = bytearray()
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return bytes(seen)
        now = (time.perf_counter() - t0, process_cpu(pid).total)
        marks.setdefault(b"", now)
        seen += data
        for key in (b"virtrio-guest: ports", b"virtrio-guest: ready"):
            if key in seen:
                marks.setdefault(key, now)


async def _connect(path: Path) -> trio.SocketStream:
    return await trio.open_unix_socket(str(path))


async def boot(machine: QemuMachine, folder: Path, timeout: float) -> dict[str, object]:
    """Boot one guest in ``folder``; its stage times (s since spawn) and QEMU's CPU seconds."""
    launch = plan_launch(machine, folder)
    t0 = time.perf_counter()
    process = await trio.lowlevel.open_process(
        launch.argv, pass_fds=launch.pass_fds, stdout=launch.log.open("wb"), stderr=-2
    )
    launch.close()
    marks: dict[bytes, tuple[float, float]] = {}
    result: dict[str, object] = {}
    try:
        with trio.fail_after(timeout):
            qmp = await _connect(folder / "qmp.sock")
            await qmp.receive_some(4096)
            result["qmp"] = time.perf_counter() - t0
            result["qmp_cpu"] = process_cpu(process.pid).total
            console = await _connect(folder / "console.sock")
            qga = await _connect(folder / "qga.sock")
            async with trio.open_nursery() as nursery:
                log: list[bytes] = []

                async def read_console() -> None:
                    log.append(await _read_until(console, marks, t0, process.pid))

                nursery.start_soon(read_console)
                await qga.send_all(b'{"execute":"guest-ping"}\n')
                reply = await qga.receive_some(4096)
                assert b"return" in reply, reply
                result["agent"] = time.perf_counter() - t0
                result["cpu"] = process_cpu(process.pid).total
                await (
                    trio.lowlevel.checkpoint()
                )  # let the console reader stamp what already arrived
                nursery.cancel_scope.cancel()
            for stage, key in (
                ("serial", b""),
                ("init", b"virtrio-guest: ports"),
                ("ready", b"virtrio-guest: ready"),
            ):
                if key in marks:
                    result[stage], result[f"{stage}_cpu"] = marks[key]
            result["console"] = log
    finally:
        process.kill()
        await process.wait()
    return result


def _printk_report(folder: Path, top: int = 12) -> None:
    text = (folder / "console.log").read_bytes()
    stamps = [(float(m[1]), m[2].decode(errors="replace")) for m in _PRINTK.finditer(text)]
    gaps = sorted(
        ((b[0] - a[0], a[0], a[1], b[1]) for a, b in itertools.pairwise(stamps)),
        reverse=True,
    )
    print(f"  kernel log: {len(stamps)} lines, last at {stamps[-1][0]:.3f} s guest time")
    for gap, at, line, following in gaps[:top]:
        print(f"    {gap * 1000:7.1f} ms after [{at:8.3f}] {line[:60]}")
        print(f"               until {following[:80]}")


async def run(args: argparse.Namespace) -> list[Row]:
    image = build_guest()
    append = " ".join(
        filter(None, [image.cmdline, args.append, "printk.time=1 ignore_loglevel" * args.printk])
    )
    machine = attrs.evolve(
        QemuMachine.demo(
            image,
            ports=("org.virtrio.echo0", "org.virtrio.mux0"),
            console_socket=True,
            extra_args=tuple(args.extra.split()) if args.extra else (),
        ),
        append=append,
        **({"bios": None} if args.seabios else {}),
    )
    if args.kernel:  # try another kernel image (e.g. the ELF vmlinux, booted by PVH)
        machine = attrs.evolve(machine, kernel=Path(args.kernel))
    if args.raw_initrd:  # try the initramfs uncompressed: no gunzip inside the guest
        raw = Path(tempfile.mkdtemp()) / "initrd.cpio"
        raw.write_bytes(gzip.decompress(image.initrd.read_bytes()))
        machine = attrs.evolve(machine, initrd=raw)
    print("argv:", " ".join(plan_launch(machine, Path(tempfile.mkdtemp())).argv[1:]))
    rows = []
    for n in args.guests:
        names = [*STAGES, *(f"{s}_cpu" for s in STAGES[:-1]), "cpu"]
        per_stage: dict[str, list[float]] = {s: [] for s in names}
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="guest-boot-") as tmp:
                results: list[dict[str, object]] = []

                async def one(i: int, tmp: str = tmp, results: list = results) -> None:  # type: ignore[type-arg]
                    results.append(await boot(machine, Path(tmp) / str(i), args.timeout))

                async with trio.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(one, i)
                for r in results:
                    for stage in per_stage:
                        if isinstance(r.get(stage), float):
                            per_stage[stage].append(r[stage])  # type: ignore[arg-type]
                if args.printk:
                    _printk_report(Path(tmp) / "0")
        for label, keys in (("wall s", STAGES), ("QEMU CPU s", names[len(STAGES) :])):
            line = "  ".join(
                f"{k} {Spread.of(per_stage[k]).describe('.2f')}" for k in keys if per_stage[k]
            )
            print(f"x{n} {label}: {line}")
        agent = Spread.of(per_stage["agent"])
        rows.append(
            Row(
                key=f"guest.boot.x{n}",
                value=agent.median * 1000,
                unit="ms",
                cpu_us={"virtrio": {"qemu": Spread.of(per_stage["cpu"]).median * 1e6}},
                runs=agent,
                note=json.dumps({s: Spread.of(v).median for s, v in per_stage.items() if v}),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guests", type=lambda s: [int(n) for n in s.split(",")], default=[1])
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--printk", action="store_true", help="guest timestamps of boot steps")
    parser.add_argument("--kernel", help="boot this kernel image instead")
    parser.add_argument("--raw-initrd", action="store_true", help="uncompressed initramfs")
    parser.add_argument("--seabios", action="store_true", help="QEMU's default firmware")
    parser.add_argument("--append", default="", help="more kernel command line")
    parser.add_argument("--extra", default="", help="extra QEMU arguments, space-separated")
    args = parser.parse_args()
    rows = trio.run(run, args)
    if not (
        args.printk or args.extra or args.append or args.seabios or args.raw_initrd or args.kernel
    ):
        print("written", write_results("guest_boot", rows))


if __name__ == "__main__":
    main()
