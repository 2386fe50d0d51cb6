"""One yamux stream as a :class:`trio.abc.HalfCloseableStream`: :class:`MuxStream`.

Its reader and writer park on a :class:`_Wakeup` until the session's reader delivers data,
credit, an end or a reset; writes go through the session (:mod:`._trio`), which sends them as
its wire allows (:mod:`._wire`).
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

import trio

from virtrio.errors import ConnectionLostError

from ._errors import YamuxError

if TYPE_CHECKING:
    from ._trio import MuxSession

__all__ = ["MuxStream", "SessionLostError", "StreamResetError"]

#: What ``receive_some()`` returns at most when no size is asked for.
_READ_SIZE = 1024 * 1024
#: Writers wait once this much is queued for the wire (bounds memory; the reader never waits).
HIGH_WATER = 1024 * 1024


class _Wakeup:
    """Where the one task that may wait for something (a stream has one reader and one
    writer) parks: cheaper than a :class:`trio.Event` renewed at every wait. Check the
    condition, then wait, with no checkpoint in between."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    def wait(self) -> Awaitable[object]:
        # not a coroutine of its own: the caller awaits Trio's directly (one frame fewer to
        # suspend and resume at every wait)
        self._task = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort)  # noqa: ASYNC105 (awaited by the caller)

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def wake(self) -> None:
        if (task := self._task) is not None:
            self._task = None
            trio.lowlevel.reschedule(task)


class StreamResetError(YamuxError, ConnectionLostError, trio.BrokenResourceError):
    """The stream was reset (by the peer, or because the session ended): not an EOF, and not
    a protocol violation (a peer may reset a stream whenever it likes)."""


class SessionLostError(YamuxError, ConnectionLostError, trio.BrokenResourceError):
    """A stream's call failed because its whole session ended (the connection was lost or
    closed, or the peer broke the protocol): not a reset of that one stream."""


class MuxStream(trio.abc.HalfCloseableStream):
    """One yamux stream: a :class:`trio.abc.HalfCloseableStream`."""

    def __init__(self, session: MuxSession, stream_id: int) -> None:
        self._session = session
        #: The yamux stream id (odd: opened by the client side).
        self.stream_id = stream_id
        self._chunks: deque[bytes | memoryview] = deque()  # frame bodies as received
        self._eof = False
        self._reset: BaseException | None = None
        self._closed = False
        self._sent_eof = False
        self._readable = _Wakeup()
        self._writable = _Wakeup()
        self._receiving = False
        self._sending = False
        self._outgoing: memoryview | None = None  # what send_all has still to queue
        self._head = b""  # what goes before it, in the same frame (see send_all_prefixed)

    # called by the session's reader
    def _feed(self, data: bytes | memoryview) -> None:
        self._chunks.append(data)
        self._readable.wake()

    def _end(self) -> None:
        self._eof = True
        self._readable.wake()

    def _broken(self, error: BaseException) -> None:
        if self._reset is None:
            self._reset = error
        self._readable.wake()
        self._writable.wake()
        if (turn := self._session._turn) is not None:
            turn.wake(self)  # its reader may be reading the socket itself

    def _window(self) -> None:
        # A writer waiting for this credit has its next frame queued by the reader at once,
        # a scheduling round before it wakes (the peer's reader is the bottleneck otherwise).
        view = self._outgoing
        if (
            view
            and self._reset is None
            and self._session._unsent <= HIGH_WATER
            and (taken := self._session._send_data(self.stream_id, view, self._head))
        ):
            self._outgoing, self._head = view[taken:], b""
        self._writable.wake()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, waiting for credit as the peer reads.

        Raises:
            trio.BusyResourceError: another task is sending on this stream.
            trio.ClosedResourceError: the stream was closed or half-closed by us.
            StreamResetError: the stream was reset.
        """
        await self._send(b"", data)

    async def send_all_prefixed(self, prefix: bytes, data: bytes | bytearray | memoryview) -> None:
        """Send ``prefix`` then ``data``, as ``send_all(prefix + data)`` would, but without
        joining them: ``prefix`` (a few bytes, such as a message's length) goes in the same
        Data frame as the start of ``data``, written from both buffers in one write, so the
        peer reads them as one piece and nobody copies ``data``.

        Raises:
            trio.BusyResourceError: another task is sending on this stream.
            trio.ClosedResourceError: the stream was closed or half-closed by us.
            StreamResetError: the stream was reset.
        """
        if not data or len(prefix) > 1024:
            await self._send(b"", bytes(prefix) + bytes(data) if prefix else data)
        else:
            await self._send(bytes(prefix), data)

    async def _send(self, head: bytes, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this yamux stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            session = self._session
            core = session._core
            self._outgoing = memoryview(data)
            self._head = head
            waited = False  # a wait is a checkpoint: then no other is needed
            # Over HIGH_WATER queued, a writer waits for the wire to drain before it queues
            # more; woken, it queues what it may and goes (all the waiting writers wake at
            # once: had each to look again, most would find the others' frames over the mark
            # and wait once more for nothing, a task step each).
            drained = False
            while True:
                self._check_writable()
                if not drained and session._unsent > HIGH_WATER:
                    await session._wait_drained()
                    waited = drained = True
                    continue
                if self._outgoing and (
                    taken := session._send_data(self.stream_id, self._outgoing, self._head)
                ):
                    self._outgoing = self._outgoing[taken:]
                    self._head = b""
                else:
                    session._flush()
                if not self._outgoing:
                    break
                if core.send_window(self.stream_id) <= len(self._head):
                    session._want_input()  # the credit comes with the input
                    await self._writable.wait()
                    waited = True
                    drained = False
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False
            self._outgoing = None
            self._head = b""

    def send_all_nowait(self, data: bytes | bytearray | memoryview) -> None:
        """Queue all of ``data`` to leave with what is sent next on the session (the next
        :meth:`send_all`, on any stream), without waiting: a small piece (a message's length
        prefix) then travels in that write, in a Data frame of its own, and is never joined
        to what follows by a copy. Not a checkpoint.

        Raises:
            trio.WouldBlock: the stream's credit or the session's buffer cannot take all of
                ``data`` now (nothing was queued): use :meth:`send_all`.
            trio.BusyResourceError: another task is sending on this stream.
            trio.ClosedResourceError: the stream was closed or half-closed by us.
            StreamResetError: the stream was reset.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this yamux stream")
        self._check_writable()
        session = self._session
        core = session._core
        if core.send_window(self.stream_id) < len(data) or session._unsent > HIGH_WATER:
            raise trio.WouldBlock
        core.send_data(self.stream_id, data)  # copied into the session's queue

    def _check_writable(self) -> None:
        if self._closed or self._sent_eof:
            raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed for sending")
        if self._reset is not None:
            raise self._broken_error()

    def _broken_error(self) -> StreamResetError | SessionLostError:
        reason = self._reset
        if isinstance(reason, StreamResetError):
            error: StreamResetError | SessionLostError = StreamResetError(
                f"yamux stream {self.stream_id} was reset"
            )
        else:
            error = SessionLostError(f"yamux stream {self.stream_id}: {reason}")
        error.__cause__ = reason
        return error

    async def wait_send_all_might_not_block(self) -> None:
        """Return once the stream has credit (or is closed/reset)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this yamux stream")
        self._check_writable()
        core = self._session._core
        self._session._flush()
        if core.send_window(self.stream_id):
            await trio.lowlevel.checkpoint()
            return
        self._sending = True
        try:
            while not (core.send_window(self.stream_id) or self._reset or self._closed):
                self._session._want_input()
                await self._writable.wait()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` bytes (default: all buffered, up to 1 MiB); ``b""`` after FIN.

        Raises:
            StreamResetError: the stream was reset (distinct from EOF).
            trio.ClosedResourceError: we closed the stream.
            trio.BusyResourceError: another task is receiving.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for anything but an integer
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this yamux stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False  # a wait is a checkpoint: then no other is needed
            while True:
                if self._closed:
                    raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed")
                if self._chunks:
                    data = self._take(_READ_SIZE if max_bytes is None else max_bytes)
                    core = self._session._core
                    core.consumed(self.stream_id, len(data))
                    if core.bytes_queued:
                        # credit goes back at half the window, so it can wait a round or
                        # two, and leave with other streams' in one write
                        self._session._wake_writer()
                    break
                if self._reset is not None:
                    raise self._broken_error()
                if self._eof:
                    data = b""
                    break
                waited = await self._wait_for_input() or waited
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def _wait_for_input(self) -> bool:
        """Wait for data, the end or a reset, reading the socket ourselves if we may (see
        _inbound); False if nothing had to be waited for (no schedule point)."""
        session = self._session
        session._flush()  # what we owe the peer (a SYN, an ACK) goes first
        if (turn := session._turn) is None:
            await self._readable.wait()
            return True
        if turn.take(self):
            return await turn.read_until(self._has_input)
        turn.poll()  # the data may be there already
        if self._has_input():
            return False
        turn.want()
        turn.parked += 1
        try:
            await self._readable.wait()
        finally:
            turn.parked -= 1
        return True

    async def receive_prefixed(self, prefix_size: int, limit: int) -> bytes | None:
        """The next record as :meth:`send_all_prefixed` sends one, when it is there whole:
        a ``prefix_size``-byte big-endian length, then that many bytes (1 to ``limit``), in
        the one piece buffered first (the Data frame it came in). Waits until something is
        buffered (or the end, or a reset); returns the record without its length, or None,
        having taken nothing, when what comes first is anything else (the end, a length over
        ``limit``, a record in pieces): :meth:`receive_some` then takes it as it is.

        Raises:
            StreamResetError: the stream was reset.
            trio.ClosedResourceError: we closed the stream.
            trio.BusyResourceError: another task is receiving.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this yamux stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            waited = False
            chunks = self._chunks
            while not chunks:
                if self._closed:
                    raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed")
                if self._reset is not None:
                    raise self._broken_error()
                if self._eof:
                    break
                waited = await self._wait_for_input() or waited
            if self._closed:
                raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed")
            record: bytes | None = None
            if chunks and len(chunk := chunks[0]) > prefix_size:
                end = prefix_size + (want := int.from_bytes(chunk[:prefix_size], "big"))
                if 0 < want <= limit and end <= len(chunk):
                    piece = chunk[prefix_size:end]
                    record = piece if type(piece) is bytes else bytes(piece)
                    if end == len(chunk):
                        chunks.popleft()
                    else:
                        chunks[0] = memoryview(chunk)[end:]
                    core = self._session._core
                    core.consumed(self.stream_id, end)
                    if core.bytes_queued:
                        self._session._wake_writer()
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return record
        finally:
            self._receiving = False

    def receive_some_nowait(self, max_bytes: int) -> bytes:
        """What :meth:`receive_some` would return now, without waiting: the data buffered
        (up to ``max_bytes``); ``b""`` after FIN. Not a checkpoint.

        Raises:
            trio.WouldBlock: nothing has arrived yet.
            StreamResetError: the stream was reset (distinct from EOF).
            trio.ClosedResourceError: we closed the stream.
            trio.BusyResourceError: another task is receiving.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this yamux stream")
        if self._closed:
            raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed")
        if self._chunks:
            data = self._take(max_bytes)
            core = self._session._core
            core.consumed(self.stream_id, len(data))
            if core.bytes_queued:
                self._session._wake_writer()
            return data
        if self._reset is not None:
            raise self._broken_error()
        if self._eof:
            return b""
        raise trio.WouldBlock

    def _has_input(self) -> bool:
        """Something for receive_some: data, the end, or a reset."""
        return bool(self._chunks) or self._eof or self._reset is not None or self._closed

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` buffered bytes, in one piece (copied once at most)."""
        chunks = self._chunks
        if len(chunks) == 1 and len(chunks[0]) <= limit:  # one frame's body: the usual case
            chunk = chunks.popleft()
            return chunk if type(chunk) is bytes else bytes(chunk)
        parts: list[bytes | memoryview] = []
        total = 0
        while chunks and total < limit:
            chunk = chunks.popleft()
            if total + len(chunk) > limit:
                chunk = memoryview(chunk)
                chunks.appendleft(chunk[limit - total :])
                chunk = chunk[: limit - total]
            parts.append(chunk)
            total += len(chunk)
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)

    async def send_eof(self) -> None:
        """Half-close (FIN): the peer reads EOF; we may go on reading."""
        await trio.lowlevel.checkpoint()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this yamux stream")
        if self._closed:
            raise trio.ClosedResourceError(f"yamux stream {self.stream_id} was closed")
        if not self._sent_eof and self._reset is None:
            self._sent_eof = True
            self._session._core.send_fin(self.stream_id)
            self._session._wake_writer()

    async def aclose(self) -> None:
        """Close: FIN if not sent yet; unread data is discarded."""
        if not self._closed:
            self._closed = True
            if not self._sent_eof and self._reset is None:
                self._sent_eof = True
                self._session._core.send_fin(self.stream_id)
                self._session._wake_writer()
            self._readable.wake()
            self._writable.wake()
            if (turn := self._session._turn) is not None:
                turn.wake(self)  # its reader may be reading the socket itself
            if self._eof or self._reset is not None:  # both directions done: forget it
                self._session._streams.pop(self.stream_id, None)
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        """Abort the stream in both directions (RST); the peer's reads raise a reset error."""
        if self._reset is None:
            self._session._core.send_reset(self.stream_id)
            self._session._can_open.set()  # if it was never acknowledged, a slot is free
            self._session._flush()
            self._broken(StreamResetError("reset locally"))
            self._session._streams.pop(self.stream_id, None)
        await trio.lowlevel.checkpoint()
