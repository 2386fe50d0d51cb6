"""A scripted in-process gdbstub for the client's unit tests (the real one is QEMU's: see
test_qemu.py). It frames packets with its own few lines of code, not the client's."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

TARGET_XML = (
    b'<?xml version="1.0"?><target><architecture>arm</architecture>'
    b'<xi:include href="core.xml"/></target>'
)
CORE_XML = (
    b'<feature name="org.gnu.gdb.arm.m-profile"><reg name="r0" bitsize="32"/>'
    b'<reg name="r1" bitsize="32"/><reg name="pc" bitsize="32" type="code_ptr"/>'
    b'<reg name="xpsr" bitsize="32" regnum="25"/></feature>'
)
_PACKET = re.compile(rb"\$([^#]*)#([0-9a-fA-F]{2})", re.S)

Handler = Callable[[bytes], "list[bytes] | None"]


def frame(payload: bytes) -> bytes:
    return b"$%s#%02x" % (payload, sum(payload) & 0xFF)


def unescape(data: bytes) -> bytes:
    return re.sub(rb"\}(.)", lambda m: bytes((m.group(1)[0] ^ 0x20,)), data, flags=re.S)


class FakeStub:
    """Answers what the client's handshake asks and keeps registers and memory; ``handlers``
    (by packet prefix, longest first) override or add replies: a handler returns the packets
    to send (none while "running") or None to fall through to the defaults."""

    def __init__(
        self,
        *,
        no_ack: bool = False,
        binary: bool = False,
        handlers: dict[bytes, Handler] | None = None,
    ) -> None:
        self.no_ack = no_ack
        self.binary = binary
        self.handlers = handlers or {}
        self.received: list[bytes] = []
        self.raw = bytearray()
        self.acks = 0  # '+' received between packets
        self.registers = {0: 1, 1: 2, 2: 0x100, 25: 0x01000000}
        self.memory = bytearray(range(256)) * 16
        self.acking = True
        self.running = False
        self.stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()

    def _g(self) -> bytes:
        return b"".join(
            self.registers[n].to_bytes(4, "little").hex().encode() for n in (0, 1, 2, 25)
        )

    def answer(self, payload: bytes) -> list[bytes]:
        for prefix in sorted(self.handlers, key=len, reverse=True):
            if payload.startswith(prefix):
                result = self.handlers[prefix](payload)
                if result is not None:
                    return result
        features = b"PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+"
        if payload.startswith(b"qSupported"):
            return [features + (b";QStartNoAckMode+" if self.no_ack else b"")]
        if payload == b"QStartNoAckMode" and self.no_ack:
            return [b"OK"]
        if payload == b"vCont?":
            return [b"vCont;c;C;s;S"]
        if payload.startswith(b"qXfer:features:read:"):
            annex, _, span = payload[len(b"qXfer:features:read:") :].partition(b":")
            doc = {b"target.xml": TARGET_XML, b"core.xml": CORE_XML}[annex]
            offset, length = (int(x, 16) for x in span.split(b","))
            part = doc[offset : offset + length]
            return [(b"l" if offset + length >= len(doc) else b"m") + part]
        if payload == b"?":
            return [b"T05thread:p01.01;"]
        if payload == b"g":
            return [self._g()]
        if payload[:1] == b"p":
            n = int(payload[1:], 16)
            return (
                [self.registers[n].to_bytes(4, "little").hex().encode()]
                if n in self.registers
                else [b"E14"]
            )
        if payload[:1] == b"P":
            n, _, value = payload[1:].partition(b"=")
            self.registers[int(n, 16)] = int.from_bytes(bytes.fromhex(value.decode()), "little")
            return [b"OK"]
        if payload[:1] in (b"m", b"x"):
            if payload[:1] == b"x" and not self.binary:
                return [b""]
            addr, length = (int(x, 16) for x in payload[1:].split(b","))
            if addr + length > len(self.memory):
                return [b"E14"]
            data = bytes(self.memory[addr : addr + length])
            if payload[:1] == b"m":
                return [data.hex().encode()]
            return [
                b"b" + re.sub(rb"([$#}*])", lambda m: b"}" + bytes((m.group(1)[0] ^ 0x20,)), data)
            ]
        if payload[:1] in (b"M", b"X"):
            if payload[:1] == b"X" and not self.binary:
                return [b""]
            head, _, data = payload[1:].partition(b":")
            addr, length = (int(x, 16) for x in head.split(b","))
            raw = unescape(data) if payload[:1] == b"X" else bytes.fromhex(data.decode())
            assert len(raw) == length, (raw, length)
            self.memory[addr : addr + length] = raw
            return [b"OK"]
        if payload[:1] in (b"Z", b"z"):
            return [b"OK"]
        if payload.startswith((b"vCont;c", b"c")):
            self.running = True
            return []
        if payload.startswith((b"vCont;s", b"s")):
            self.registers[2] += 2
            return [b"T05thread:p01.01;"]
        return [b""]

    async def serve(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            await self._serve(stream)  # ends when the test hangs up

    async def _serve(self, stream: trio.SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            while data := await stream.receive_some(65536):
                self.raw += data
                buffer += data
                while buffer:
                    if buffer[:1] in (b"+", b"-"):
                        self.acks += buffer[:1] == b"+"
                        del buffer[0]
                        continue
                    if buffer[:1] == b"\x03":
                        del buffer[0]
                        if self.running:
                            self.running = False
                            await self.send(frame(b"T02thread:p01.01;"))
                        continue
                    match = _PACKET.match(bytes(buffer))
                    if match is None:
                        break
                    del buffer[: match.end()]
                    raw = match.group(1)
                    # X's data stays escaped here: its handler unescapes it
                    payload = raw if raw[:1] == b"X" else unescape(raw)
                    self.received.append(payload)
                    ack = b"+" if self.acking else b""
                    replies = self.answer(payload)
                    await self.send(ack + b"".join(frame(r) for r in replies))
                    if payload == b"QStartNoAckMode" and self.no_ack:
                        self.acking = False

    async def stop(self, payload: bytes = b"T05thread:p01.01;") -> None:
        """Send a stop reply, as when the running target hits something."""
        self.running = False
        await self.send(frame(payload))

    async def send(self, data: bytes) -> None:
        """Send raw bytes (between the stub's own replies)."""
        assert self.stream is not None
        async with self._send_lock:
            await self.stream.send_all(data)


@asynccontextmanager
async def serve_stub(stub: FakeStub, folder: Path) -> AsyncIterator[str]:
    """Serve ``stub`` on a Unix socket in ``folder``; yields its address."""
    path = folder / "stub.sock"
    listeners = [trio.SocketListener(await _listen(path))]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, stub.serve, listeners)
        yield f"unix:{path}"
        nursery.cancel_scope.cancel()


async def _listen(path: Path) -> trio.socket.SocketType:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(4)
    return sock


@contextlib.contextmanager
def serve_stub_in_thread(stub: FakeStub, folder: Path) -> Iterator[str]:
    """Serve ``stub``'s answers to one client from a thread with a blocking socket, so they come
    while the client's event loop is busy (busy-polling for them); yields the address. Packets
    and acks only (no ``\\x03``); a handler may block this thread to answer late."""
    path = folder / "thread-stub.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    listener.settimeout(30)  # a test that never connects does not leave the thread behind

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.settimeout(None)
        buffer = bytearray()
        with conn:
            while data := conn.recv(65536):
                stub.raw += data
                buffer += data
                while buffer[:1] == b"+":
                    stub.acks += 1
                    del buffer[0]
                while match := _PACKET.match(bytes(buffer)):
                    del buffer[: match.end()]
                    payload = unescape(match.group(1))
                    stub.received.append(payload)
                    ack = b"+" if stub.acking else b""
                    conn.sendall(ack + b"".join(frame(r) for r in stub.answer(payload)))
                    if payload == b"QStartNoAckMode" and stub.no_ack:
                        stub.acking = False
                    while buffer[:1] == b"+":
                        stub.acks += 1
                        del buffer[0]

    thread = threading.Thread(target=serve, name="gdb-thread-stub", daemon=True)
    thread.start()
    try:
        yield f"unix:{path}"
    finally:
        listener.close()
        thread.join(10)
        assert not thread.is_alive(), "the thread stub did not end with its client"
