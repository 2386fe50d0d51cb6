"""Virga's message framing on a yamux stream: an 8-byte big-endian length, then the message.

:class:`LengthPrefixDecoder` is the sans-I/O half (bytes in, messages out);
:class:`LengthPrefixedChannel` puts it over one Trio stream.

A message is copied as little as the stream allows. The decoder keeps what it is fed as
pieces, and a piece that is exactly one message *is* that message (no copy; a message
spread over pieces is joined once). Over a yamux stream (anything with ``send_all_prefixed``,
``receive_prefixed`` and ``receive_some_nowait``), the prefix goes in the message's first Data
frame, written from its own buffer in the same write, so the message is never joined to it by
a copy, and the receiving end takes each such message whole in one call (``receive_prefixed``);
anything else goes through the decoder, asking the stream for just what it still needs.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol, runtime_checkable

import trio

from virtrio.channels._jsonstream import NEED_DATA, NeedData
from virtrio.errors import ConnectionLostError, ProtocolError
from virtrio.primitives import Mutex

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
        self._pieces: deque[bytes] = deque()  # as fed; the first one from ``_offset`` on
        self._offset = 0
        self._size = 0  # bytes buffered
        self._want: int | None = None
        self._eof = False

    @property
    def needed(self) -> int:
        """How many more bytes the next message (or its prefix) needs at least."""
        want = PREFIX_SIZE if self._want is None else self._want
        return max(1, want - self._size)

    @property
    def idle(self) -> bool:
        """Nothing is buffered: the next bytes fed start a length prefix."""
        return not self._size and self._want is None and not self._eof

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes (``b""`` = end of stream). ``bytes`` are kept as they are, without a
        copy (so a piece that is exactly one message is returned as that message)."""
        if data:
            piece = data if type(data) is bytes else bytes(data)
            self._pieces.append(piece)
            self._size += len(piece)
        else:
            self._eof = True

    def _take(self, count: int) -> bytes:
        """The first ``count`` buffered bytes (there are that many), copied once at most."""
        pieces = self._pieces
        first = pieces[0]
        offset = self._offset
        self._size -= count
        if offset == 0 and len(first) == count:
            pieces.popleft()
            return first
        end = offset + count
        if end <= len(first):
            if end == len(first):
                pieces.popleft()
                self._offset = 0
            else:
                self._offset = end
            return first[offset:end]
        parts = [memoryview(pieces.popleft())[offset:]]
        got = len(parts[0])
        while got < count:
            piece = pieces.popleft()
            if got + len(piece) > count:
                self._offset = count - got
                parts.append(memoryview(piece)[: self._offset])
                pieces.appendleft(piece)
                break
            parts.append(memoryview(piece))
            got += len(piece)
        else:
            self._offset = 0
        return b"".join(parts)

    def next_message(self) -> bytes | NeedData | None:
        """The next message, :data:`NEED_DATA`, or ``None`` at a clean end of stream.

        Raises:
            LengthPrefixError: a length over the limit, or the stream ended mid-message.
        """
        if self._want is None:
            if self._size >= PREFIX_SIZE:
                want = int.from_bytes(self._take(PREFIX_SIZE), "big")
                if want > self.max_message_size:
                    raise LengthPrefixError(
                        f"the peer announced a {want}-byte message; the limit is"
                        f" {self.max_message_size}"
                    )
                self._want = want
            elif not self._eof:
                return NEED_DATA
            elif self._size:
                raise LengthPrefixError(
                    f"the stream ended inside a length prefix ({self._size} bytes)"
                )
            else:
                return None
        if self._size >= self._want:
            message = self._take(self._want) if self._want else b""
            self._want = None
            return message
        if self._eof:
            raise LengthPrefixError(
                f"the stream ended inside a message ({self._size} of {self._want} bytes)"
            )
        return NEED_DATA


@runtime_checkable
class _Nowait(Protocol):
    """A stream that can take bytes without waiting, and send a prefix with what follows
    without joining them (a yamux stream)."""

    async def send_all_prefixed(self, prefix: bytes, data: bytes) -> None: ...

    def receive_some_nowait(self, max_bytes: int) -> bytes: ...

    async def receive_prefixed(self, prefix_size: int, limit: int) -> bytes | None: ...


class LengthPrefixedChannel(trio.abc.Channel[bytes]):
    """Messages over one byte stream, framed as virga frames them on its yamux stream.

    One task may receive while others send; sends are serialized so messages never interleave.
    """

    def __init__(self, stream: trio.abc.HalfCloseableStream, *, max_message_size: int) -> None:
        self.stream = stream
        self._decoder = LengthPrefixDecoder(max_message_size=max_message_size)
        # the send turn: one task sends at a time, the others wait in order (a StrictFIFOLock
        # without its per-acquire bookkeeping)
        self._send_turn = Mutex()  # one message on the wire at a time, in FIFO order
        self._nowait = stream if isinstance(stream, _Nowait) else None
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
        data = value if type(value) is bytes else bytes(value)
        await self._take_send_turn()
        try:
            prefix = len(data).to_bytes(PREFIX_SIZE, "big")
            if self._nowait is not None:
                await self._nowait.send_all_prefixed(prefix, data)
            elif len(data) > _COPY_LIMIT:
                await self.stream.send_all(prefix)
                await self.stream.send_all(data)
            else:
                await self.stream.send_all(prefix + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._broken = True
            raise ConnectionLostError(f"sending a message failed: {exc}") from exc
        except BaseException:
            self._broken = True  # part of a message may be on the wire
            raise
        finally:
            self._pass_send_turn()

    async def _take_send_turn(self) -> None:
        # a cancel point either way; uncontended, no trip through the scheduler (the send
        # makes one)
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._send_turn.acquire()

    def _pass_send_turn(self) -> None:
        self._send_turn.release()

    async def receive(self) -> bytes:
        """The next message.

        Raises:
            trio.EndOfChannel: the peer closed its side after its last message.
            ConnectionLostError: the stream failed.
            LengthPrefixError: the peer broke the framing.
        """
        decoder = self._decoder
        waited = False  # a wait is a checkpoint: then no other is needed
        if self._nowait is not None and decoder.idle:
            # a message sent with send_all_prefixed, there whole: taken in one call, without
            # the decoder (anything else is left for it)
            try:
                whole = await self._nowait.receive_prefixed(PREFIX_SIZE, decoder.max_message_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._broken = True
                raise ConnectionLostError(f"receiving a message failed: {exc}") from exc
            if whole is not None:
                return whole
            waited = True
        while True:
            try:
                message = decoder.next_message()
            except LengthPrefixError:
                self._broken = True
                raise
            if isinstance(message, bytes):
                break
            if message is None:
                self._peer_closed = True
                raise trio.EndOfChannel
            try:
                if self._nowait is None:
                    data = await self.stream.receive_some(_RECEIVE_SIZE)
                    waited = True
                else:
                    # just what is still needed: a message that came as one piece is
                    # handed over as it is
                    try:
                        data = self._nowait.receive_some_nowait(decoder.needed)
                    except trio.WouldBlock:
                        data = await self.stream.receive_some(decoder.needed)
                        waited = True
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._broken = True
                raise ConnectionLostError(f"receiving a message failed: {exc}") from exc
            decoder.receive_data(data)
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return message

    async def send_eof(self) -> None:
        """Half-close: the peer's receive ends after our last message."""
        await self._take_send_turn()
        try:
            await self.stream.send_eof()
        finally:
            self._pass_send_turn()

    async def aclose(self) -> None:
        """Close the stream."""
        self._closed = True
        await self.stream.aclose()
