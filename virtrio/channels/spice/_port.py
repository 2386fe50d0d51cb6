"""Port channel (spiceport): a Trio stream over a named port; also drains generic channels."""

from __future__ import annotations

import struct

import trio

from virtrio.channels.spice._channel import SpiceChannel
from virtrio.channels.spice._errors import SpiceProtocolError
from virtrio.channels.spice._framing import Message

__all__ = ["PortChannel", "parse_port_init"]

MSG_DATA = 101
MSG_COMPRESSED_DATA = 102
MSG_PORT_INIT = 201
MSG_PORT_EVENT = 202
MSGC_DATA = 101
MSGC_PORT_EVENT = 201
EVENT_OPENED = 0
EVENT_CLOSED = 1


def parse_port_init(body: bytes | bytearray) -> tuple[str, bool]:
    """PORT_INIT → (name, opened)."""
    try:
        size, ptr = struct.unpack_from("<II", body)
        opened = body[8]
    except (struct.error, IndexError):
        raise SpiceProtocolError("PORT_INIT body too short") from None
    if ptr + size > len(body):
        raise SpiceProtocolError("PORT_INIT name runs past the message")
    return body[ptr : ptr + size].rstrip(b"\0").decode(errors="replace"), bool(opened)


class PortChannel(trio.abc.Stream):
    """A spiceport as a byte stream. Received data is buffered, bounded at 256 messages: while
    the buffer is full the channel stops reading its socket, which back-pressures the server
    (nothing is dropped; the channel's pings and acks wait too)."""

    def __init__(self, channel: SpiceChannel) -> None:
        self.channel = channel
        self.name: str | None = None
        self.opened = False
        self.ready = trio.Event()
        self._send, self._receive = trio.open_memory_channel[bytes](256)
        self._buffer = b""
        channel.handler = self.handle

    async def handle(self, msg: Message) -> None:
        """Apply one port message (data waits for room in the buffer)."""
        if msg.type == MSG_PORT_INIT:
            self.name, self.opened = parse_port_init(msg.body)
            self.ready.set()
        elif msg.type == MSG_PORT_EVENT and msg.body:
            self.opened = msg.body[0] == EVENT_OPENED if msg.body[0] in (0, 1) else self.opened
        elif msg.type == MSG_DATA and msg.body:
            await self._send.send(bytes(msg.body))  # no copy unless read in place
        elif msg.type == MSG_COMPRESSED_DATA:
            raise SpiceProtocolError("compressed port data was not asked for")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write bytes to the port."""
        data = bytes(data)
        for i in range(0, len(data), 65536):
            await self.channel.send(MSGC_DATA, data[i : i + 65536])

    async def wait_send_all_might_not_block(self) -> None:
        """Always ready."""

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Read bytes; b"" once the channel closed and everything received was read."""
        if not self._buffer:
            try:
                self._buffer = await self._receive.receive()
            except trio.EndOfChannel:
                return b""
        n = len(self._buffer) if max_bytes is None else max_bytes
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    async def end_when_closed(self) -> None:
        """Run alongside the channel: end the stream (after buffered data) once it closes."""
        await self.channel.wait_closed()
        await self._send.aclose()

    async def send_event(self, event: int) -> None:
        """Send a port event (OPENED=0, CLOSED=1, BREAK=2)."""
        await self.channel.send(MSGC_PORT_EVENT, bytes([event]))

    async def aclose(self) -> None:
        """Close the port's connection."""
        await self.channel.abort()
