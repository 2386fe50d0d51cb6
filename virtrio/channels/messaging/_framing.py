"""Virga's message framing on a yamux stream: an 8-byte big-endian length, then the message.

:class:`LengthPrefixDecoder` is the sans-I/O half (bytes in, messages out);
:class:`LengthPrefixedChannel` puts it over one Trio stream.
"""

from __future__ import annotations

import trio

from virtrio.channels._jsonstream import NEED_DATA, NeedData
from virtrio.errors import ConnectionLostError, ProtocolError

from ._errors import MessagingError

__all__ = [
    "PREFIX_SIZE",
    "LengthPrefixDecoder",
    "LengthPrefixError",
    "LengthPrefixedChannel",
    "encode_length_prefixed",
]

PREFIX_SIZE = 8
_RECEIVE_SIZE = 256 * 1024
# above this a message is sent as prefix + body in two writes instead of copying it once
_COPY_LIMIT = 256 * 1024


class LengthPrefixError(MessagingError, ProtocolError):
    """The peer announced a message over the limit, or the stream ended inside a message."""


def encode_length_prefixed(message: bytes) -> bytes:
    """``message`` with its 8-byte big-endian length in front (how virga writes it)."""
    return len(message).to_bytes(PREFIX_SIZE, "big") + message


class LengthPrefixDecoder:
    """Splits a byte stream into length-prefixed messages, at most ``max_message_size`` each."""

    def __init__(self, *, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._want: int | None = None
        self._eof = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes (``b""`` = end of stream)."""
        if data:
            self._buffer += data
        else:
            self._eof = True

    def next_message(self) -> bytes | NeedData | None:
        """The next message, :data:`NEED_DATA`, or ``None`` at a clean end of stream.

        Raises:
            LengthPrefixError: a length over the limit, or the stream ended mid-message.
        """
        buffer = self._buffer
        if self._want is None:
            if len(buffer) >= PREFIX_SIZE:
                want = int.from_bytes(buffer[:PREFIX_SIZE], "big")
                if want > self.max_message_size:
                    raise LengthPrefixError(
                        f"the peer announced a {want}-byte message; the limit is"
                        f" {self.max_message_size}"
                    )
                del buffer[:PREFIX_SIZE]
                self._want = want
            elif not self._eof:
                return NEED_DATA
            elif buffer:
                raise LengthPrefixError(
                    f"the stream ended inside a length prefix ({len(buffer)} bytes)"
                )
            else:
                return None
        if len(buffer) >= self._want:
            message = bytes(buffer[: self._want])
            del buffer[: self._want]
            self._want = None
            return message
        if self._eof:
            raise LengthPrefixError(
                f"the stream ended inside a message ({len(buffer)} of {self._want} bytes)"
            )
        return NEED_DATA


class LengthPrefixedChannel(trio.abc.Channel[bytes]):
    """Messages over one byte stream, framed as virga frames them on its yamux stream.

    One task may receive while others send; sends are serialized so messages never interleave.
    """

    def __init__(self, stream: trio.abc.HalfCloseableStream, *, max_message_size: int) -> None:
        self.stream = stream
        self._decoder = LengthPrefixDecoder(max_message_size=max_message_size)
        self._send_lock = trio.StrictFIFOLock()
        self._peer_closed = False
        self._closed = False
        self._broken = False

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways."""
        return not (self._closed or self._peer_closed or self._broken)

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        """Send one message.

        Raises:
            ConnectionLostError: the stream failed or is closed.
        """
        data = bytes(value)
        async with self._send_lock:
            try:
                if len(data) > _COPY_LIMIT:
                    await self.stream.send_all(len(data).to_bytes(PREFIX_SIZE, "big"))
                    await self.stream.send_all(data)
                else:
                    await self.stream.send_all(encode_length_prefixed(data))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._broken = True
                raise ConnectionLostError(f"sending a message failed: {exc}") from exc
            except BaseException:
                self._broken = True  # part of a message may be on the wire
                raise

    async def receive(self) -> bytes:
        """The next message.

        Raises:
            trio.EndOfChannel: the peer closed its side after its last message.
            ConnectionLostError: the stream failed.
            LengthPrefixError: the peer broke the framing.
        """
        while True:
            try:
                message = self._decoder.next_message()
            except LengthPrefixError:
                self._broken = True
                raise
            if isinstance(message, bytes):
                return message
            if message is None:
                self._peer_closed = True
                raise trio.EndOfChannel
            try:
                data = await self.stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._broken = True
                raise ConnectionLostError(f"receiving a message failed: {exc}") from exc
            self._decoder.receive_data(data)

    async def send_eof(self) -> None:
        """Half-close: the peer's receive ends after our last message."""
        async with self._send_lock:
            await self.stream.send_eof()

    async def aclose(self) -> None:
        """Close the stream."""
        self._closed = True
        await self.stream.aclose()
