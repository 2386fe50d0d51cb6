"""Emulation backends: the GDB client against QEMU's gdbstub, beside the stub's own round trip
(a raw blocking socket doing the same RSP exchange) and GNU gdb (gdb-multiarch over MI) driving
the same QEMU, in one run.

One QEMU (x86_64, the bare-metal test program of tests/peers/programs, halted at ``tick``)
serves each client in turn. Operations, each the median of N (best of ROUNDS alternating
rounds, to damp the noise of a shared 2-core machine), with CPU per operation (getrusage for
this process; /proc for gdb):

* register read: every register (``g``; virtrio also decodes it by the target description);
* 4 KiB memory read (two ``m`` of 2 KiB: QEMU 7.2 has no binary ``x``, PacketSize is 4 KiB);
* breakpoint round trip: set a breakpoint on ``tick``, continue, hit it (the next call), remove
  it. Continuing from a breakpoint steps off it first, as gdb does: virtrio's exchange is
  ``Z0``, ``p`` (is the PC at a breakpoint?), ``z0``, ``vCont;s``, ``Z0``, ``vCont;c`` (then the
  stop), ``z0``; the raw socket replays exactly these packets.

A fourth client, the "Trio floor", sends the same packets from one Trio task straight on the
socket: what any Trio client pays for the event loop, before virtrio's own reader task,
deadlines, parsing and checks.

Target (issue 14): each virtrio operation within 1.2x of the raw socket. Run:
``.venv/bin/python benchmarks/backends.py``. The instance-creation and snapshot rows come with
the QEMU backend adapter.
"""

from __future__ import annotations

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
from collections.abc import Callable
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.programs import BareMetalProgram, build_program, start_gdb_qemu  # noqa: E402
from virtrio.channels.gdb import open_gdb  # noqa: E402

N = {"register read": 2000, "4 KiB memory read": 1000, "breakpoint round trip": 500}
N_GDB = {"register read": 300, "4 KiB memory read": 300, "breakpoint round trip": 150}
ROUNDS = 3
OPS = list(N)

# one sample per operation: (wall seconds, CPU seconds for the whole batch / count)
Result = dict[str, tuple[list[float], float]]


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- virtrio ----------------------------------------------------------------------------------


def virtrio_round(address: str, program: BareMetalProgram) -> Result:
    tick = program.symbols["tick"]
    pattern = program.symbols["pattern"]

    async def main() -> Result:
        async with open_gdb(address) as gdb:
            await gdb.set_breakpoint(tick)
            await gdb.continue_()
            await gdb.wait_stop()
            await gdb.remove_breakpoint(tick)

            async def registers() -> None:
                await gdb.read_registers()

            async def memory() -> None:
                await gdb.read_memory(pattern, 4096)

            async def breakpoint() -> None:
                await gdb.set_breakpoint(tick)
                await gdb.continue_()
                await gdb.wait_stop()
                await gdb.remove_breakpoint(tick)

            result: Result = {}
            for name, op in zip(OPS, (registers, memory, breakpoint), strict=True):
                for _ in range(50):
                    await op()
                samples = []
                cpu = cpu_self()
                for _ in range(N[name]):
                    t = time.perf_counter()
                    await op()
                    samples.append(time.perf_counter() - t)
                result[name] = (samples, (cpu_self() - cpu) / N[name])
            return result

    return trio.run(main)


# --- the raw socket: the same packets, blocking, no parsing beyond framing ------------------


class RawRsp:
    """The RSP exchange at its cheapest: one blocking socket, a buffered reader, acks."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.buffer = bytearray()

    def _packet(self) -> bytes:
        while True:
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start + 1) if start >= 0 else -1
            if end >= 0 and len(self.buffer) >= end + 3:
                payload = bytes(self.buffer[start + 1 : end])
                del self.buffer[: end + 3]
                self.sock.sendall(b"+")
                return payload
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the stub closed the connection")
            self.buffer += data

    def send(self, payload: bytes) -> None:
        self.sock.sendall(b"$%s#%02x" % (payload, sum(payload) & 0xFF))

    def call(self, payload: bytes) -> bytes:
        self.send(payload)
        return self._packet()

    def close(self) -> None:
        self.sock.close()


def raw_round(address: str, program: BareMetalProgram) -> Result:
    tick, pattern = program.symbols["tick"], program.symbols["pattern"]
    raw = RawRsp(address.removeprefix("unix:"))
    try:
        if raw.call(b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+")[:1] == b"T":
            raw._packet()  # QEMU halted the running target for us and said so first
        raw.call(b"qXfer:features:read:target.xml:0,ffb")
        raw.call(b"?")
        z0, unz0 = b"Z0,%x,1" % tick, b"z0,%x,1" % tick
        raw.call(z0)
        raw.send(b"vCont;c")
        raw._packet()
        raw.call(unz0)

        def registers() -> None:
            raw.call(b"g")

        def memory() -> None:
            raw.call(b"m%x,800" % pattern)
            raw.call(b"m%x,800" % (pattern + 0x800))

        def breakpoint() -> None:
            raw.call(z0)
            raw.call(b"p10")
            raw.call(unz0)
            raw.call(b"vCont;s:p1.1")
            raw.call(z0)
            raw.send(b"vCont;c")
            raw._packet()
            raw.call(unz0)

        result: Result = {}
        for name, op in zip(OPS, (registers, memory, breakpoint), strict=True):
            for _ in range(50):
                op()
            samples = []
            cpu = cpu_self()
            for _ in range(N[name]):
                t = time.perf_counter()
                op()
                samples.append(time.perf_counter() - t)
            result[name] = (samples, (cpu_self() - cpu) / N[name])
        raw.call(b"D;1")  # gdb's detach: the target runs on, as after gdb
        return result
    finally:
        raw.close()


class TrioRsp:
    """The same exchange in Trio, in one task, straight on the socket: the event loop's floor
    for any Trio client (virtrio adds its reader task, deadlines, parsing and checks)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.fd = stream.socket.fileno()
        self.buffer = bytearray()

    async def packet(self) -> bytes:
        while True:
            start = self.buffer.find(b"$")
            end = self.buffer.find(b"#", start + 1) if start >= 0 else -1
            if end >= 0 and len(self.buffer) >= end + 3:
                payload = bytes(self.buffer[start + 1 : end])
                del self.buffer[: end + 3]
                os.write(self.fd, b"+")
                return payload
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.fd)
                continue
            if not data:
                raise ConnectionError("the stub closed the connection")
            self.buffer += data

    def send(self, payload: bytes) -> None:
        os.write(self.fd, b"$%s#%02x" % (payload, sum(payload) & 0xFF))

    async def call(self, payload: bytes) -> bytes:
        self.send(payload)
        return await self.packet()


def trio_floor_round(address: str, program: BareMetalProgram) -> Result:
    tick, pattern = program.symbols["tick"], program.symbols["pattern"]

    async def main() -> Result:
        stream = await trio.open_unix_socket(address.removeprefix("unix:"))
        async with stream:
            raw = TrioRsp(stream)
            features = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+"
            if (await raw.call(features))[:1] == b"T":
                await raw.packet()
            await raw.call(b"qXfer:features:read:target.xml:0,ffb")
            await raw.call(b"?")
            z0, unz0 = b"Z0,%x,1" % tick, b"z0,%x,1" % tick

            async def registers() -> None:
                await raw.call(b"g")

            async def memory() -> None:
                await raw.call(b"m%x,800" % pattern)
                await raw.call(b"m%x,800" % (pattern + 0x800))

            async def breakpoint() -> None:
                for packet in (z0, b"p10", unz0, b"vCont;s:p1.1", z0):
                    await raw.call(packet)
                raw.send(b"vCont;c")
                await raw.packet()
                await raw.call(unz0)

            await raw.call(z0)
            raw.send(b"vCont;c")
            await raw.packet()
            await raw.call(unz0)
            result: Result = {}
            for name, op in zip(OPS, (registers, memory, breakpoint), strict=True):
                for _ in range(50):
                    await op()
                samples = []
                cpu = cpu_self()
                for _ in range(N[name]):
                    t = time.perf_counter()
                    await op()
                    samples.append(time.perf_counter() - t)
                result[name] = (samples, (cpu_self() - cpu) / N[name])
            return result

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

        result: Result = {}
        for name, op in zip(OPS, (registers, memory, breakpoint), strict=True):
            for _ in range(20):
                op()
            samples = []
            cpu = gdb.cpu() + cpu_self()
            for _ in range(N_GDB[name]):
                t = time.perf_counter()
                op()
                samples.append(time.perf_counter() - t)
            result[name] = (samples, (gdb.cpu() + cpu_self() - cpu) / N_GDB[name])
        return result
    finally:
        gdb.close()


def main() -> int:
    program = build_program("x86_64")
    clients: dict[str, Callable[[str, BareMetalProgram], Result]] = {
        "virtrio": virtrio_round,
        "raw socket": raw_round,
        "Trio floor": trio_floor_round,
        "gdb (MI)": gdb_round,
    }
    rounds: dict[str, list[Result]] = {name: [] for name in clients}
    with tempfile.TemporaryDirectory() as tmp:
        target = start_gdb_qemu(program, Path(tmp) / "qemu")
        try:
            for _ in range(ROUNDS):
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
    print(f"GDB remote protocol against QEMU 7.2's gdbstub, x86_64 ({ROUNDS} rounds, best kept)")
    print(f"{'operation':<24}{'client':<12}{'median':>10}{'p99':>10}{'CPU/op':>10}")
    for op in OPS:
        for name in clients:
            median, p99, cpu = table[name][op]
            print(f"{op:<24}{name:<12}{median * 1e6:>8.0f}µs{p99 * 1e6:>8.0f}µs{cpu * 1e6:>8.0f}µs")
    print()
    for op in OPS:
        ours, raw, floor, gdb = (table[name][op][0] for name in clients)
        print(
            f"{op:<24} virtrio/raw {ours / raw:.2f}x (target <= 1.2x)   "
            f"virtrio/Trio floor {ours / floor:.2f}x   virtrio/gdb {ours / gdb:.2f}x"
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
