"""One engine, a large fleet: memory per VM, time to connected, a reconnect storm, throughput.

The fleet: ``--vms`` (default 1000) VMs whose QMP and QGA peers are simulated by a second
process (this script with ``--simulate``: a Trio server on 2 Unix sockets per VM answering the
QMP greeting, ``qmp_capabilities``, ``query-status``, ``guest-sync-delimited`` and
``guest-ping``), plus ``--qemus`` (default 20) real ``qemu-system-x86_64 -machine none``
launched and owned by the engine. Reported:

* memory per VM: the engine process's RSS growth from before ``open_engine`` to every channel
  connected, divided by the VMs (target <= 100 KiB);
* time until every channel is connected;
* a reconnect storm: the simulator is killed (SIGKILL) and started again on the same sockets;
  the time until every channel is connected again, and how the reconnects spread (jitter: the
  10th-90th percentile of their times, not one instant);
* query-status throughput across the fleet (``--tasks`` concurrent callers, each VM in turn);
* tasks left in the Trio run after the engine closed (must be 0);
* with ``--guests 1,2,4``: demo guests booted at once, spawn to every guest agent answering.

Run: ``.venv/bin/python benchmarks/fleet.py`` (``--vms 200 --qemus 5`` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from virtrio.engine import default_fleet, open_engine
from virtrio.engine.config import ChannelConfig, Defaults, Fleet, QemuConfig, VmConfig
from virtrio.nurseries import QgaOptions, QmpOptions

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the simulator (a second process) -------------------------------------------------------


def answer(message: dict[str, Any], qga: bool) -> bytes:
    command = message.get("execute")
    value: Any = {}
    if command == "query-status":
        value = {"status": "running", "running": True, "singlestep": False}
    elif command in ("guest-sync-delimited", "guest-sync"):
        value = message.get("arguments", {}).get("id")
    reply: dict[str, Any] = {"return": value}
    if "id" in message:
        reply["id"] = message["id"]
    prefix = b"\xff" if qga and command == "guest-sync-delimited" else b""
    return prefix + json.dumps(reply).encode() + b"\n"


async def serve_peer(stream: trio.SocketStream, qga: bool) -> None:
    decoder = json.JSONDecoder()
    buffer = ""
    try:
        if not qga:
            await stream.send_all(json.dumps(GREETING).encode() + b"\n")
        while data := await stream.receive_some(65536):
            buffer += data.replace(b"\xff", b"").decode(errors="replace")
            while True:
                buffer = buffer.lstrip()
                if not buffer:
                    break
                try:
                    message, end = decoder.raw_decode(buffer)
                except ValueError:
                    break
                buffer = buffer[end:]
                await stream.send_all(answer(message, qga))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def simulate(folder: Path, vms: int) -> None:
    raise_fd_limit()
    async with trio.open_nursery() as nursery:
        for i in range(vms):
            for kind in ("qmp", "qga"):
                path = folder / f"{kind}-{i}.sock"
                path.unlink(missing_ok=True)
                sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
                await sock.bind(str(path))
                sock.listen(64)
                listener = trio.SocketListener(sock)

                async def handler(stream: trio.SocketStream, qga: bool = kind == "qga") -> None:
                    await serve_peer(stream, qga)

                nursery.start_soon(trio.serve_listeners, handler, [listener])
        print("ready", flush=True)


def start_simulator(folder: Path, vms: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--simulate", str(folder), "--vms", str(vms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the simulator did not start")
    return proc


# -- the engine side --------------------------------------------------------------------------


def fleet_of(folder: Path, vms: int, qemus: int) -> Fleet:
    simulated = tuple(
        VmConfig(
            f"sim{i}",
            tags=("sim",),
            channels={
                "qmp": ChannelConfig("qmp", QmpOptions(address=f"unix:{folder}/qmp-{i}.sock")),
                "qga": ChannelConfig("qga", QgaOptions(address=f"unix:{folder}/qga-{i}.sock")),
            },
        )
        for i in range(vms)
    )
    real = tuple(
        VmConfig(
            f"qemu{i}",
            tags=("qemu",),
            qemu=QemuConfig(machine="none"),
            channels={"qmp": ChannelConfig("qmp", QmpOptions())},
        )
        for i in range(qemus)
    )
    defaults = Defaults(connect_timeout=30, call_timeout=60, backoff_initial=0.5, backoff_max=5)
    return Fleet(vms=simulated + real, defaults=defaults)


def count_tasks() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    return walk(root)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fleet_run(args: argparse.Namespace) -> None:
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="virtrio-fleet-bench-") as tmp:
        folder = Path(tmp)
        simulator = start_simulator(folder, args.vms)
        tasks_before = count_tasks()
        rss_before = rss_kib()
        total = args.vms + args.qemus
        start = time.monotonic()
        try:
            async with open_engine(fleet_of(folder, args.vms, args.qemus)) as engine:
                await engine.wait_connected(timeout=600)
                connected = time.monotonic() - start
                rss_after = rss_kib()
                print(f"VMs: {args.vms} simulated + {args.qemus} QEMU -machine none")
                print(f"time until every channel connected: {connected:.2f} s")
                per_vm = (rss_after - rss_before) / total
                print(
                    f"memory per VM: {per_vm:.1f} KiB (RSS {rss_before} -> {rss_after} KiB; "
                    "target <= 100 KiB)"
                )

                # query-status throughput across the fleet
                vms = engine.vms()
                calls = 0
                with trio.move_on_after(args.seconds):
                    async with trio.open_nursery() as nursery:

                        async def caller(offset: int) -> None:
                            nonlocal calls
                            i = offset
                            while True:
                                await vms[i % len(vms)].qmp.query_status()
                                calls += 1
                                i += args.tasks

                        for t in range(args.tasks):
                            nursery.start_soon(caller, t)
                print(
                    f"query-status: {calls / args.seconds:.0f} calls/s across {len(vms)} VMs "
                    f"({args.tasks} concurrent callers)"
                )

                # the reconnect storm
                lost: set[tuple[str, str | None]] = set()
                with engine.events(kinds=("state",), max_queue=1 << 16) as changes:
                    simulator.kill()
                    await trio.to_thread.run_sync(simulator.wait)
                    async for e in changes:
                        if e.name == "disconnected" and e.vm.startswith("sim"):
                            lost.add((e.vm, e.channel))
                            if len(lost) == 2 * args.vms:
                                break
                restarted = time.monotonic()
                mark = engine.mark()
                # started off the event loop: the engine keeps retrying meanwhile
                simulator = await trio.to_thread.run_sync(start_simulator, folder, args.vms)
                await engine.wait_connected(timeout=600)
                storm = time.monotonic() - restarted
                times = [
                    e.time
                    for e in engine.events_since(mark)
                    if e.kind == "state" and e.name == "connected"
                ]
                base = min(times)
                offsets = [t - base for t in times]
                stats = engine.statistics()
                print(
                    f"reconnect storm: all {len(times)} channels back {storm:.2f} s after the "
                    f"simulator restarted; reconnects spread over "
                    f"{percentile(offsets, 0.1):.2f}-{percentile(offsets, 0.9):.2f} s "
                    f"(p10-p90), stdev {statistics.pstdev(offsets):.2f} s; "
                    f"reconnects counted {stats.reconnects}, events dropped "
                    f"{stats.events_dropped}"
                )
        finally:
            simulator.kill()
            simulator.wait()
        await trio.testing.wait_all_tasks_blocked()
        print(f"tasks left after close: {count_tasks() - tasks_before}")


async def guests_run(counts: list[int]) -> None:
    for n in counts:
        start = time.monotonic()
        async with open_engine(default_fleet(vms=n)) as engine:
            launched = time.monotonic() - start
            async with trio.open_nursery() as nursery:
                for vm in engine.vms():
                    nursery.start_soon(lambda vm=vm: vm.qga.execute("guest-ping", timeout=300))
            answered = time.monotonic() - start
        print(
            f"demo guests x{n}: spawn to every guest agent answering {answered:.2f} s "
            f"(engine up, QEMUs launched, in {launched:.2f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--qemus", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--guests", default="", help="e.g. 1,2,4: demo guests booted at once")
    parser.add_argument("--simulate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate is not None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        trio.run(simulate, args.simulate, args.vms)
        return
    trio.run(fleet_run, args)
    if args.guests:
        trio.run(guests_run, [int(n) for n in args.guests.split(",")])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
