"""Emulation backends: the GDB client against QEMU's gdbstub, beside the stub's own round trip
(a raw blocking socket doing the same RSP exchange) and GNU gdb (gdb-multiarch over MI) driving
the same QEMU, in one run.

One QEMU (x86_64, the bare-metal test program of tests/peers/programs, halted at ``tick``)
serves each client in turn. Operations, each the median of N (best of ROUNDS alternating
rounds, to damp the noise of a shared 2-core machine), with CPU per operation (getrusage for
this process; /proc for gdb):

* register read: every register (``g``; virtrio also decodes it by the target description);
* 4 KiB memory read (two ``m`` of 2 KiB: QEMU 7.2 has no binary ``x``, PacketSize is 4 KiB;
  virtrio connects with ``open_gdb(pipeline=True)``, as its QEMU backend does, and sends the two
  together; the raw clients send one per round trip, as GDB does, and "raw pipelined", a
  blocking socket writing both at once, shows what sending them together is worth by itself);
* breakpoint round trip: set a breakpoint on ``tick``, continue, hit it (the next call), remove
  it. Continuing from a breakpoint steps off it first, as gdb does: virtrio's exchange is
  ``Z0``, ``p`` (is the PC at a breakpoint?), ``z0``, ``vCont;s``, ``Z0``, ``vCont;c`` (then the
  stop), ``z0``; the raw socket replays exactly these packets.

The raw socket sleeps in ``recv`` for each reply, so on an idle machine its figure includes the
wake-up of a blocked reader; virtrio's client busy-polls for a moment first (``open_gdb(spin=)``)
and can come in under it. "raw busy-poll" replays the same packets polling a non-blocking
socket: the stub's round trip with no wake-up at all, shown beside (the target stays the raw
socket's, as issue 14 sets it).

QEMU 7.2's stub has no no-ack mode, so every packet it sends is acknowledged with ``+``. The raw
clients and virtrio send each ``+`` at once, on its own (as GDB does): QEMU's main loop, woken
for it, is still awake when the next request comes, where one that went back to sleep takes
~20 µs to wake on these machines (virtrio used to send it with its next packet instead; 8
alternating rounds of each in one process, 2026-12-04: ``g`` 31-45 µs at once against 45-91 µs
with the next packet). "raw busy-poll +next" is the busy-poll client sending it with the next
packet, for comparison. "raw busy-poll" makes virtrio's very writes (but for the 4 KiB read's
two ``m``, one per round trip): the strictest rows.

A fourth client, the "Trio floor", sends the same packets from one Trio task straight on the
socket: what any Trio client pays for the event loop, before virtrio's locks,
deadlines, parsing and checks (virtrio reads its replies the same way: one task, the socket's
descriptor, wait_readable).

Target (issue 14): each virtrio operation within 1.2x of the raw socket. Run:
``.venv/bin/python benchmarks/backends.py`` (``--rounds N``, ``--clients virtrio,raw socket``,
``--no-adapter``: see ``--help``). Then the QEMU backend adapter's rows
(benchmarks/_adapter_rows.py): instance create to first instruction, and snapshot create/restore
by snapshot-save/load jobs and by migration to a file.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._adapter_rows import adapter_rows  # noqa: E402
from benchmarks._measure import Row, Spread, write_results  # noqa: E402
from tests.peers.programs import BareMetalProgram, build_program, start_gdb_qemu  # noqa: E402
from virtrio.channels.gdb import open_gdb  # noqa: E402

N = {"register read": 2000, "4 KiB memory read": 1000, "breakpoint round trip": 500}
N_GDB = {"register read": 300, "4 KiB memory read": 300, "breakpoint round trip": 150}
ROUNDS = 3
OPS = list(N)
#: the summary table's key of each operation (benchmarks/summary.py)
KEYS = {
    "register read": "gdb.registers",
    "4 KiB memory read": "gdb.memory4k",
    "breakpoint round trip": "gdb.breakpoint",
}
#: the references the summary table compares virtrio with: the raw socket (issue 14's target),
#: and, as a reference row without a target, the busy-poll client (no wake-up at all)
REFERENCES = {"raw socket": "", "raw busy-poll": ".busy-poll"}

# one sample per operation: (wall seconds, CPU seconds for the whole batch / count)
Result = dict[str, tuple[list[float], float]]


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- virtrio ----------------------------------------------------------------------------------


async def time_async(
    ops: dict[str, Callable[[], Awaitable[object]]],
    counts: dict[str, int],
    cpu: Callable[[], float] = cpu_self,
) -> Result:
    """Each operation ``counts[name]`` times after a warm-up: samples and CPU per operation."""
    result: Result = {}
    for name, op in ops.items():
        for _ in range(20):
            await op()
        samples = []
        start = cpu()
        for _ in range(counts[name]):
            t = time.perf_counter()
            await op()
            samples.append(time.perf_counter() - t)
        result[name] = (samples, (cpu() - start) / counts[name])
    return result


def time_sync(
    ops: dict[str, Callable[[], object]],
    counts: dict[str, int],
    cpu: Callable[[], float] = cpu_self,
) -> Result:
    """:func:`time_async` for blocking operations."""

    async def run() -> Result:
        wrapped = {name: _awaitable(op) for name, op in ops.items()}
        return await time_async(wrapped, counts, cpu)

    return trio.run(run)


def _awaitable(op: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        return op()

    return call


def virtrio_round(address: str, program: BareMetalProgram) -> Result:
    tick = program.symbols["tick"]
    pattern = program.symbols["pattern"]

    async def main() -> Result:
        async with open_gdb(address, pipeline=True) as gdb:

            async def breakpoint() -> None:
                await gdb.set_breakpoint(tick)
                await gdb.continue_()
                await gdb.wait_stop()
                await gdb.remove_breakpoint(tick)

            await breakpoint()  # to tick first
            ops = {
                "register read": gdb.read_registers,
                "4 KiB memory read": lambda: gdb.read_memory(pattern, 4096),
                "breakpoint round trip": breakpoint,
            }
            return await time_async(ops, N)

    return trio.run(main)


def packets(program: BareMetalProgram) -> dict[str, list[bytes]]:
    """What virtrio sends for each operation, for the raw clients to replay (each packet is
    answered by one packet: ``vCont;c``'s is the stop reply once the target stops)."""
    tick, pattern = program.symbols["tick"], program.symbols["pattern"]
    z0, unz0 = b"Z0,%x,1" % tick, b"z0,%x,1" % tick
    return {
        "register read": [b"g"],
        "4 KiB memory read": [b"m%x,800" % pattern, b"m%x,800" % (pattern + 0x800)],
        # continuing from tick: step off it (is the PC at a breakpoint? lift it, step, put it back)
        "breakpoint round trip": [z0, b"p10", unz0, b"vCont;s:p1.1", z0, b"vCont;c", unz0],
    }


def is_stop(payload: bytes) -> bool:
    """A stop reply: QEMU greets a client with one (T02) when the previous client left the
    target running, before the answer to the first request."""
    return (
        payload[:1] == b"T"
        and len(payload) >= 3
        and all(c in b"0123456789abcdef" for c in payload[1:3])
    )


SUPPORTED = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+"


# --- the raw socket: the same packets, blocking, no parsing beyond framing ------------------


def take_packet(buffer: bytearray) -> bytes | None:
    """The first whole packet's payload, taken out of ``buffer`` (acks before it dropped)."""
    start = buffer.find(b"$")
    end = buffer.find(b"#", start + 1) if start >= 0 else -1
    if end < 0 or len(buffer) < end + 3:
        return None
    payload = bytes(buffer[start + 1 : end])
    del buffer[: end + 3]
    return payload


class RawRsp:
    """The RSP exchange at its cheapest: one blocking socket, a buffered reader, acks."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buffer = bytearray()

    def receive(self) -> bytes:
        """The next packet's payload, blocking (not acknowledged yet)."""
        while (payload := take_packet(self.buffer)) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the stub closed the connection")
            self.buffer += data
        return payload

    def packet(self) -> bytes:
        payload = self.receive()
        self.sock.sendall(b"+")
        return payload

    def spin(self, *, ack_with_next: bool = False) -> None:
        """Busy-poll for replies instead of sleeping in ``recv`` (as virtrio's client does for
        a moment): what the stub's round trip costs without the wake-up from a blocking read.
        With ``ack_with_next``, each ``+`` goes out in front of the next packet (as virtrio
        sent it until 2026-12-04) rather than on its own."""
        self.sock.setblocking(False)
        receive = self.sock.recv
        if ack_with_next:
            self.owed = b""
            send = self.sock.send

            def take() -> bytes:
                while (payload := take_packet(self.buffer)) is None:
                    try:
                        data = receive(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise ConnectionError("the stub closed the connection")
                    self.buffer += data
                self.owed = b"+"
                return payload

            def exchange(sequence: list[bytes]) -> bytes:
                reply = b""
                for payload in sequence:
                    send(self.owed + b"$%s#%02x" % (payload, sum(payload) & 0xFF))
                    self.owed = b""
                    reply = take()
                return reply

            self.packet = take  # type: ignore[method-assign]
            self.exchange = exchange  # type: ignore[method-assign]
            return

        def packet() -> bytes:
            while (payload := take_packet(self.buffer)) is None:
                try:
                    data = receive(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionError("the stub closed the connection")
                self.buffer += data
            self.sock.send(b"+")  # one byte into an empty socket buffer: never short
            return payload

        self.packet = packet  # type: ignore[method-assign]

    def exchange(self, sequence: list[bytes]) -> bytes:
        reply = b""
        for payload in sequence:
            self.sock.sendall(b"$%s#%02x" % (payload, sum(payload) & 0xFF))
            reply = self.packet()
        return reply

    def exchange_together(self, sequence: list[bytes]) -> bytes:
        """All of ``sequence`` in one write, then their replies (one ack for them all)."""
        self.sock.sendall(b"".join(b"$%s#%02x" % (p, sum(p) & 0xFF) for p in sequence))
        replies = [self.receive() for _ in sequence]
        self.sock.sendall(b"+")
        return replies[-1]

    def handshake(self) -> None:
        if is_stop(self.exchange([SUPPORTED])):
            self.packet()
        self.exchange([b"?"])

    def close(self) -> None:
        if getattr(self, "owed", b""):
            self.sock.send(self.owed)
        self.sock.close()


def raw_round(
    address: str,
    program: BareMetalProgram,
    *,
    spin: bool = False,
    ack_with_next: bool = False,
    together: bool = False,
) -> Result:
    raw = RawRsp(address.removeprefix("unix:"))
    try:
        raw.handshake()
        if spin:
            raw.spin(ack_with_next=ack_with_next)
        ops = packets(program)
        raw.exchange(ops["breakpoint round trip"][4:])  # to tick first
        timed = {name: lambda s=seq: raw.exchange(s) for name, seq in ops.items()}
        if together:
            memory = ops["4 KiB memory read"]
            timed["4 KiB memory read"] = lambda: raw.exchange_together(memory)
        result = time_sync(timed, N)
        raw.exchange([b"D;1"])  # gdb's detach: the target runs on, as after gdb
        return result
    finally:
        raw.close()


class TrioRsp:
    """The same exchange in Trio, in one task, straight on the socket: the event loop's floor
    for any Trio client (virtrio adds its locks, deadlines, parsing and checks)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.fd = stream.socket.fileno()
        self.buffer = bytearray()

    async def packet(self) -> bytes:
        while (payload := take_packet(self.buffer)) is None:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                continue
            if not data:
                raise ConnectionError("the stub closed the connection")
            self.buffer += data
        os.write(self.fd, b"+")
        return payload

    async def exchange(self, sequence: list[bytes]) -> bytes:
        reply = b""
        for payload in sequence:
            os.write(self.fd, b"$%s#%02x" % (payload, sum(payload) & 0xFF))
            reply = await self.packet()
        return reply


def trio_floor_round(address: str, program: BareMetalProgram) -> Result:
    async def main() -> Result:
        stream = await trio.open_unix_socket(address.removeprefix("unix:"))
        async with stream:
            raw = TrioRsp(stream)
            if is_stop(await raw.exchange([SUPPORTED])):
                await raw.packet()
            await raw.exchange([b"?"])
            ops = packets(program)
            await raw.exchange(ops["breakpoint round trip"][4:])
            return await time_async(
                {name: lambda s=seq: raw.exchange(s) for name, seq in ops.items()}, N
            )

    return trio.run(main)


# --- GNU gdb over MI --------------------------------------------------------------------------


class GdbMi:
    """gdb-multiarch with the MI interpreter on pipes: a command, then its result record."""

    def __init__(self, gdb: str) -> None:
        self.process = subprocess.Popen(
            [gdb, "--interpreter=mi2", "-nx", "-q"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.token = 0
        self.read_until(rb"^\(gdb\)")

    def read_until(self, pattern: bytes) -> bytes:
        regex = re.compile(pattern)
        while True:
            line = self.stdout.readline()
            if not line:
                raise ConnectionError("gdb exited")
            if regex.search(line):
                return line

    def command(self, text: str, *, until: bytes | None = None) -> bytes:
        self.token += 1
        self.stdin.write(f"{self.token}{text}\n".encode())
        self.stdin.flush()
        line = self.read_until(rb"^%d\^" % self.token)
        if line.startswith(b"%d^error" % self.token):
            raise RuntimeError(f"gdb: {text}: {line.decode().strip()}")
        if until is not None:
            self.read_until(until)
        return line

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        try:
            self.command("-target-detach")
            self.command("-gdb-exit")
            self.process.wait(10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()


def gdb_round(address: str, program: BareMetalProgram) -> Result:
    gdb_binary = shutil.which("gdb-multiarch")
    if gdb_binary is None:
        raise SystemExit("gdb-multiarch not found: apt-get install gdb-multiarch")
    tick, pattern = program.symbols["tick"], program.symbols["pattern"]
    gdb = GdbMi(gdb_binary)
    try:
        gdb.command(f"-target-select remote {address.removeprefix('unix:')}")
        stopped = rb"^\*stopped"

        def breakpoint() -> None:
            line = gdb.command(f"-break-insert *{tick:#x}")
            number = re.search(rb'number="(\d+)"', line)
            assert number is not None
            gdb.command("-exec-continue", until=stopped)
            gdb.command(f"-break-delete {number.group(1).decode()}")

        breakpoint()

        def registers() -> None:
            # gdb caches registers at a stop: flushing makes it read them from the stub again
            gdb.command('-interpreter-exec console "maint flush register-cache"')
            gdb.command("-data-list-register-values --skip-unavailable x")

        def memory() -> None:
            gdb.command(f"-data-read-memory-bytes {pattern:#x} 4096")

        ops = {
            "register read": registers,
            "4 KiB memory read": memory,
            "breakpoint round trip": breakpoint,
        }
        return time_sync(ops, N_GDB, lambda: gdb.cpu() + cpu_self())
    finally:
        gdb.close()


CLIENTS: dict[str, Callable[[str, BareMetalProgram], Result]] = {
    "virtrio": virtrio_round,
    "raw socket": raw_round,
    "raw busy-poll": functools.partial(raw_round, spin=True),
    "raw busy-poll +next": functools.partial(raw_round, spin=True, ack_with_next=True),
    "raw pipelined": functools.partial(raw_round, together=True),
    "Trio floor": trio_floor_round,
    "gdb (MI)": gdb_round,
}


def summary_rows(
    rounds: dict[str, list[Result]], table: dict[str, dict[str, tuple[float, float, float]]]
) -> Iterable[Row]:
    """The summary table's lines: each operation's median (µs) against each reference that
    ran, with both clients' CPU per operation and every round's medians for the spread."""
    for reference, suffix in REFERENCES.items():
        if reference not in rounds:
            continue
        for op in OPS:
            ours, theirs = table["virtrio"][op], table[reference][op]
            note = f"best of {len(rounds['virtrio'])} rounds' medians; QEMU 7.2 gdbstub, x86_64"
            if op == "4 KiB memory read" and "raw pipelined" in table:
                note += (
                    "; virtrio sends the two m packets together, the reference one per round "
                    f"trip (raw pipelined: {table['raw pipelined'][op][0] * 1e6:.1f} µs)"
                )
            yield Row(
                KEYS[op] + suffix,
                ours[0] * 1e6,
                "µs",
                anchor=reference,
                anchor_value=theirs[0] * 1e6,
                cpu_us={
                    "virtrio": {"client": ours[2] * 1e6},
                    reference: {"client": theirs[2] * 1e6},
                },
                runs=Spread.of(statistics.median(r[op][0]) * 1e6 for r in rounds["virtrio"]),
                anchor_runs=Spread.of(statistics.median(r[op][0]) * 1e6 for r in rounds[reference]),
                note=note,
            )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds")
    parser.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated, of: " + ", ".join(CLIENTS) + " (virtrio and raw socket always)",
    )
    parser.add_argument("--no-adapter", action="store_true", help="skip the adapter rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    wanted = {"virtrio", "raw socket", *(c.strip() for c in args.clients.split(","))}
    unknown = wanted - CLIENTS.keys()
    if unknown:
        raise SystemExit(f"unknown clients: {', '.join(sorted(unknown))}")
    clients = {name: run for name, run in CLIENTS.items() if name in wanted}
    program = build_program("x86_64")
    rounds: dict[str, list[Result]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory() as tmp:
        target = start_gdb_qemu(program, Path(tmp) / "qemu")
        try:
            for _ in range(args.rounds):
                for name, run in clients.items():
                    rounds[name].append(run(target.gdb_address, program))
        finally:
            target.process.terminate()
            target.process.wait()

    # per client and operation: the best round's median, its p99, and its CPU per operation
    table: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, results in rounds.items():
        table[name] = {}
        for op in OPS:
            best = min(results, key=lambda r: statistics.median(r[op][0]))
            samples = sorted(best[op][0])
            table[name][op] = (
                statistics.median(samples),
                samples[int(len(samples) * 0.99) - 1],
                best[op][1],
            )
    print(
        f"GDB remote protocol against QEMU 7.2's gdbstub, x86_64 ({args.rounds} rounds, best kept)"
    )
    print(f"{'operation':<24}{'client':<28}{'median':>10}{'p99':>10}{'CPU/op':>10}")
    for op in OPS:
        for name in clients:
            median, p99, cpu = table[name][op]
            print(f"{op:<24}{name:<28}{median * 1e6:>8.0f}µs{p99 * 1e6:>8.0f}µs{cpu * 1e6:>8.0f}µs")
    print()
    for op in OPS:
        ours, raw = table["virtrio"][op][0], table["raw socket"][op][0]
        line = f"{op:<24} virtrio/raw {ours / raw:.2f}x (target <= 1.2x)"
        if "raw busy-poll" in table:
            line += f"   virtrio/busy-poll {ours / table['raw busy-poll'][op][0]:.2f}x"
        if "raw busy-poll +next" in table:
            next_ack = table["raw busy-poll +next"][op][0]
            line += f"   virtrio/(+ with next) {ours / next_ack:.2f}x"
        if "Trio floor" in table:
            line += f"   virtrio/Trio floor {ours / table['Trio floor'][op][0]:.2f}x"
        if "gdb (MI)" in table:
            line += f"   virtrio/gdb {ours / table['gdb (MI)'][op][0]:.2f}x"
        print(line)
    print()
    # each round's virtrio/raw ratios (the clients ran one after the other): the spread
    for reference in ("raw socket", "raw busy-poll", "raw busy-poll +next"):
        if reference not in rounds:
            continue
        print(f"virtrio/{reference} per round (medians of the same round), and CPU/op of each:")
        for op in OPS:
            ratios = [
                statistics.median(ours[op][0]) / statistics.median(raw[op][0])
                for ours, raw in zip(rounds["virtrio"], rounds[reference], strict=True)
            ]
            cpu_ours = [r[op][1] * 1e6 for r in rounds["virtrio"]]
            cpu_raw = [r[op][1] * 1e6 for r in rounds[reference]]
            print(
                f"{op:<24} {' '.join(f'{x:.2f}' for x in ratios)}   "
                f"(median {statistics.median(ratios):.2f}, {min(ratios):.2f}..{max(ratios):.2f})"
                f"; CPU µs/op virtrio {statistics.median(cpu_ours):.0f}, raw "
                f"{statistics.median(cpu_raw):.0f}"
            )
    print(
        json.dumps(
            {
                name: {
                    op: {"median_us": m * 1e6, "p99_us": p * 1e6, "cpu_us": c * 1e6}
                    for op, (m, p, c) in ops.items()
                }
                for name, ops in table.items()
            }
        )
    )
    rows = list(summary_rows(rounds, table))
    if rows:
        print("written", write_results("backends", rows))
    if args.no_adapter:
        return 0
    print()
    print("QEMU backend adapter (x86_64 test program, pc, 64 MiB, TCG)")
    for line in trio.run(adapter_rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
