"""QMP query-status round trip: virtrio vs qemu.qmp (asyncio) vs a raw blocking socket.

One QEMU (``-machine none``) serves every client in turn, in one run. Reported:

* sequential latency (median and p99 of N calls),
* throughput with 16 concurrent callers (commands/s); for the raw socket, 16 requests are
  pipelined per batch (with QMP's oob capability on, as the clients have it), which is the
  ceiling any client can reach on one connection.

Each client is measured in several alternating rounds and the best round's median is kept, which
damps the noise of a shared 2-core machine; every round's figure is kept too, for the spread.
Beside the wall-clock figures, the user+system CPU each side spent per command (the client's
process and QEMU's, summed over the rounds), which a busy machine disturbs far less. Run:
``.venv/bin/python benchmarks/qmp_latency.py [--rounds N] [--only virtrio]``; it writes its
rows to ``benchmarks/results/qmp_latency.json`` for ``benchmarks/summary.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import Meter, Row, Spread, Usage, write_results
from virtrio.channels.qmp import open_qmp

N_SEQUENTIAL = 2000
N_CONCURRENT = 4000
CALLERS = 16
ROUNDS = 3


def start_qemu(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    path = folder / "qmp.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()
    argv = [
        "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-display", "none",
        "-chardev", f"socket,id=m,fd={listener.fileno()},server=on,wait=off",
        "-mon", "chardev=m,mode=control",
    ]  # fmt: skip
    process = subprocess.Popen(argv, pass_fds=[listener.fileno()])
    listener.close()
    return process, str(path)


def summarize(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


#: What one round of one client gives: sequential samples, and the sequential and concurrent
#: stretches' cost (wall and CPU per side; the concurrent one's rate is the throughput).
Round = tuple[list[float], Usage, Usage]


async def measure(
    meter: Meter,
    execute: Callable[[], Awaitable[object]],
    run_callers: Callable[[Callable[[], Awaitable[None]], int], Awaitable[None]],
) -> Round:
    """Sequential samples and concurrent throughput for one async client (any framework)."""
    for _ in range(100):
        await execute()
    samples = []
    with meter:
        for _ in range(N_SEQUENTIAL):
            t = time.perf_counter()
            await execute()
            samples.append(time.perf_counter() - t)
    sequential = meter.usage(N_SEQUENTIAL)

    async def caller() -> None:
        for _ in range(N_CONCURRENT // CALLERS):
            await execute()

    with meter:
        await run_callers(caller, CALLERS)
    return samples, sequential, meter.usage(N_CONCURRENT)


def virtrio_round(path: str, meter: Meter) -> Round:
    async def run_callers(caller: Callable[[], Awaitable[None]], count: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(caller)

    async def main() -> Round:
        async with open_qmp(f"unix:{path}") as qmp:
            return await measure(meter, lambda: qmp.execute("query-status"), run_callers)

    return trio.run(main)


def qemu_qmp_round(path: str, meter: Meter) -> Round:
    from qemu.qmp import QMPClient

    async def run_callers(caller: Callable[[], Awaitable[None]], count: int) -> None:
        await asyncio.gather(*(caller() for _ in range(count)))

    async def main() -> Round:
        qmp = QMPClient("bench")
        await qmp.connect(path)
        try:
            return await measure(meter, lambda: qmp.execute("query-status"), run_callers)
        finally:
            await qmp.disconnect()

    return asyncio.run(main())


# --- a raw blocking socket -------------------------------------------------------------------


def raw_round(path: str, meter: Meter) -> Round:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        reader = sock.makefile("rb")
        greeting = reader.readline()
        # oob when offered, as qemu.qmp and virtrio ask: QEMU then reads ahead of the command
        # it runs instead of one command at a time, so the pipelined figure stays a ceiling
        oob = b'"oob"' in greeting
        enable = b',"arguments":{"enable":["oob"]}' if oob else b""
        sock.sendall(b'{"execute":"qmp_capabilities"%b}\n' % enable)
        reader.readline()
        request = b'{"execute":"query-status","id":1}\n'

        def call() -> None:
            sock.sendall(request)
            while b'"return"' not in (line := reader.readline()):
                if not line:
                    raise ConnectionError("QEMU closed the connection")

        for _ in range(100):
            call()
        samples = []
        with meter:
            for _ in range(N_SEQUENTIAL):
                t = time.perf_counter()
                call()
                samples.append(time.perf_counter() - t)
        sequential = meter.usage(N_SEQUENTIAL)
        with meter:
            for _ in range(N_CONCURRENT // CALLERS):
                sock.sendall(request * CALLERS)
                replies = 0
                while replies < CALLERS:
                    if b'"return"' in reader.readline():
                        replies += 1
        return samples, sequential, meter.usage(N_CONCURRENT)


def cpu_text(usage: Usage) -> str:
    cpu = usage.cpu_us_per_op()
    return f"client {cpu['client']:5.1f} + QEMU {cpu['qemu']:5.1f} µs/cmd"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    parser.add_argument("--only", action="append", help="measure only this client (repeatable)")
    args = parser.parse_args()
    clients: dict[str, Callable[[str, Meter], Round]] = {
        "virtrio": virtrio_round,
        "qemu.qmp": qemu_qmp_round,
        "raw socket": raw_round,
    }
    if args.only:
        clients = {name: clients[name] for name in args.only}
    rounds: dict[str, list[Round]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory() as tmp:
        process, path = start_qemu(Path(tmp))
        try:
            meter = Meter({"qemu": process.pid}, own="client")
            for _ in range(args.rounds):
                for name, measure_round in clients.items():
                    rounds[name].append(measure_round(path, meter))
        finally:
            process.terminate()
            process.wait()

    print(f"QMP query-status against one QEMU ({args.rounds} rounds, best kept)")
    print(f"{'client':<12} {'median':>10} {'p99':>10} {f'{CALLERS} callers':>24}  CPU per command")
    medians: dict[str, Spread] = {}
    rates: dict[str, Spread] = {}
    cpu: dict[str, tuple[Usage, Usage]] = {}
    for name, runs in rounds.items():
        summaries = [summarize(samples) for samples, _, _ in runs]
        medians[name] = Spread.of(m * 1e6 for m, _ in summaries)  # µs
        rates[name] = Spread.of(conc.rate for _, _, conc in runs)
        seq_usage, conc_usage = runs[0][1], runs[0][2]
        for _, seq, conc in runs[1:]:
            seq_usage, conc_usage = seq_usage + seq, conc_usage + conc
        cpu[name] = (seq_usage, conc_usage)
        median, p99 = min(summaries)
        label = f"{rates[name].high:,.0f} cmd/s" + (" (pipelined)" if name == "raw socket" else "")
        print(f"{name:<12} {median * 1e6:>8.0f}µs {p99 * 1e6:>8.0f}µs {label:>24}")
        print(
            f"{'':12} sequential: {cpu_text(seq_usage)};  {CALLERS} callers: {cpu_text(conc_usage)}"
        )
    print()
    for name in rounds:
        print(
            f"{name:<12} median µs per round {medians[name].describe('.0f')}"
            f";  cmd/s per round {rates[name].describe(',.0f')}"
        )
    if "virtrio" not in rounds or "qemu.qmp" not in rounds:
        return 0
    ours, theirs = "virtrio", "qemu.qmp"
    latency = medians[ours].low / medians[theirs].low
    throughput = rates[ours].high / rates[theirs].high
    print()
    print(f"virtrio / qemu.qmp latency:     {latency:.2f}x  (target <= 0.8x)")
    print(f"virtrio / qemu.qmp throughput:  {throughput:.2f}x  (target >= 1.25x)")
    if "raw socket" in rounds:
        print(
            f"virtrio / raw socket latency:   {medians[ours].low / medians['raw socket'].low:.2f}x"
        )

    def cpu_of(phase: int) -> dict[str, dict[str, float]]:
        return {name: cpu[name][phase].cpu_us_per_op() for name in rounds}

    write_results(
        "qmp_latency",
        [
            Row(
                "qmp.concurrent",
                rates[ours].high,
                "cmd/s",
                theirs,
                rates[theirs].high,
                cpu_us=cpu_of(1),
                runs=rates[ours],
                anchor_runs=rates[theirs],
                note=f"best of {args.rounds} rounds",
            ),
            Row(
                "qmp.sequential",
                medians[ours].low,
                "µs",
                theirs,
                medians[theirs].low,
                cpu_us=cpu_of(0),
                runs=medians[ours],
                anchor_runs=medians[theirs],
                note=f"best round's median of {N_SEQUENTIAL} calls, {args.rounds} rounds",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
