"""yamux over any Trio stream: :func:`open_mux`.

On a socket, frames are read and written directly (``os.read``/``os.write`` after Trio
reports readiness) by whichever task has them, and the writer task only sends what the
kernel did not take at once; on other streams the writer task sends everything. The why and
the figures are in docs/yamux.md ("How bytes move").
"""

from __future__ import annotations

import contextlib
import operator
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.errors import ConnectionLostError, LocalProtocolError, VirtrioTimeoutError
from virtrio.primitives import open_service_nursery

from ._frames import DEFAULT_WINDOW, GoAwayCode
from ._session import (
    GoAwayReceived,
    PongReceived,
    StreamAcknowledged,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
    YamuxError,
    YamuxProtocolError,
    YamuxSession,
)

__all__ = ["MuxSession", "MuxStream", "SessionLostError", "StreamResetError", "open_mux"]

#: Bytes asked of the transport per read.
_RECEIVE_SIZE = 512 * 1024
#: Reads shorter than this make the next read go into a small reused buffer.
_SMALL_READ = 16 * 1024
#: What ``receive_some()`` returns at most when no size is asked for.
_READ_SIZE = 1024 * 1024
#: Writers wait once this much is queued for the wire (bounds memory; the reader never waits).
_HIGH_WATER = 1024 * 1024
#: Buffers one writev may take (Linux's IOV_MAX); any beyond go to the writer task.
_IOV_MAX = 1024
#: Answers to the peer's frames (see YamuxSession.answers_queued) that may wait unsent before
#: the reader stops reading: beyond it, the peer is flooding pings or opens and not reading.
_MAX_ANSWERS = 64 * 1024
#: Scheduling rounds a SYN, ACK, FIN or returned credit waits for a Data frame to travel with.
_DEFER_ROUNDS = 2


class _Wakeup:
    """Where the one task that may wait for something (a stream has one reader and one
    writer) parks: cheaper than a :class:`trio.Event` renewed at every wait. Check the
    condition, then wait, with no checkpoint in between."""

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    async def wait(self) -> None:
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> None:
        if (task := self._task) is not None:
            self._task = None
            trio.lowlevel.reschedule(task)


class StreamResetError(YamuxError, trio.BrokenResourceError):
    """The stream was reset (by the peer, or because the session ended): not an EOF."""


class SessionLostError(ConnectionLostError, trio.BrokenResourceError):
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

    def _window(self) -> None:
        # A writer waiting for this credit has its next frame queued by the reader at once,
        # a scheduling round before it wakes (the peer's reader is the bottleneck otherwise).
        view = self._outgoing
        if view and self._reset is None and self._session._unsent <= _HIGH_WATER:
            self._outgoing = view[self._session._core.send_data(self.stream_id, view) :]
        self._writable.wake()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, waiting for credit as the peer reads.

        Raises:
            trio.BusyResourceError: another task is sending on this stream.
            trio.ClosedResourceError: the stream was closed or half-closed by us.
            StreamResetError: the stream was reset.
        """
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this yamux stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            session = self._session
            core = session._core
            self._outgoing = memoryview(data)
            waited = False  # a wait is a checkpoint: then no other is needed
            while True:
                self._check_writable()
                if self._outgoing and (taken := session._send_data(self.stream_id, self._outgoing)):
                    self._outgoing = self._outgoing[taken:]
                else:
                    session._flush()
                if session._unsent > _HIGH_WATER:
                    await session._wait_drained()
                    waited = True
                elif not self._outgoing:
                    break
                elif not core.send_window(self.stream_id):
                    await self._writable.wait()
                    waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            self._sending = False
            self._outgoing = None

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
                self._session._flush()  # what we owe the peer (a SYN, an ACK) goes first
                if not waited:
                    self._session._poll_input()  # the data may be there already
                    if self._chunks or self._eof or self._reset is not None:
                        continue
                await self._readable.wait()
                waited = True
            if not waited:
                await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    def _take(self, limit: int) -> bytes:
        """Up to ``limit`` buffered bytes, in one piece (copied once at most)."""
        chunks = self._chunks
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


class MuxSession:
    """A yamux session over one stream. Create it with :func:`open_mux`."""

    def __init__(self, transport: trio.abc.Stream, core: YamuxSession, name: str) -> None:
        self._transport = transport
        self._core = core
        self.name = name
        self._streams: dict[int, MuxStream] = {}
        self._accept_queue: deque[MuxStream] = deque()
        self._acceptable = trio.Event()
        self._can_open = trio.Event()
        self._writer_wake = trio.Event()
        self._writing = False  # the writer task owns the wire until it has sent everything
        self._unsent_tail: memoryview | None = None  # taken from the core, not yet sent
        self._drained = trio.Event()
        # A socket is written to directly, without blocking, by whichever task has bytes to
        # send; only what the kernel does not take at once is left to the writer task.
        socket = transport.socket if isinstance(transport, trio.SocketStream) else None
        self._fd = socket.fileno() if socket is not None else -1
        self._scratch: bytearray | None = None  # see _read_now
        self._tasks = trio.CancelScope()  # the reader's and writer's, once running
        self._pongs: dict[int, trio.Event] = {}
        self._closed = trio.Event()
        #: Why the session ended (None while it runs).
        self.closed_reason: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        """True until the session ends."""
        return self.closed_reason is None

    @property
    def pings_answered(self) -> int:
        """Pings of the peer's answered so far (keepalives included)."""
        return self._core.pings_answered

    async def wait_closed(self) -> None:
        """Return once the session has ended."""
        await self._closed.wait()

    def _check_open(self) -> None:
        if self.closed_reason is not None:
            raise ConnectionLostError(f"yamux session {self.name} ended: {self.closed_reason}")

    async def open_stream(self) -> MuxStream:
        """Open a stream (the peer sees it at once; no round trip is awaited).

        Raises:
            LocalProtocolError: the peer sent GoAway (raised at once, with its code).
            ConnectionLostError: the session ended.
        """
        while True:
            self._check_open()
            if self._core.remote_go_away is not None:
                raise LocalProtocolError(
                    f"yamux session {self.name}: the peer sent GoAway "
                    f"(code {self._core.remote_go_away}); no new streams"
                )
            if self._core.can_open:
                break
            if self._can_open.is_set():  # shared by all waiters: renew once used
                self._can_open = trio.Event()
            self._flush()  # the SYNs waiting for an ACK must be out
            await self._can_open.wait()
        await trio.lowlevel.checkpoint_if_cancelled()
        stream_id = self._core.open_stream()
        stream = MuxStream(self, stream_id)
        self._streams[stream_id] = stream
        # the SYN leaves one scheduling round from now, with the caller's first frame if it
        # sends at once (then in one write)
        self._wake_writer()
        return stream

    async def accept_stream(self) -> MuxStream:
        """The next stream the peer opened.

        Raises:
            ConnectionLostError: the session ended.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._accept_queue:
            self._check_open()
            if self._acceptable.is_set():  # shared by all waiters: renew once used
                self._acceptable = trio.Event()
            await self._acceptable.wait()
        stream = self._accept_queue.popleft()
        self._core.accept(stream.stream_id)
        self._wake_writer()  # no schedule point: the ACK leaves with the first reply
        return stream

    async def ping(self, *, timeout: float = 10.0) -> float:
        """Ping the peer; returns the round trip in seconds.

        Raises:
            VirtrioTimeoutError: no answer within ``timeout``.
            ConnectionLostError: the session ended.
        """
        self._check_open()
        start = trio.current_time()
        opaque = self._core.ping()
        answered = self._pongs[opaque] = trio.Event()
        self._flush()
        with trio.move_on_after(timeout):
            await answered.wait()
        self._pongs.pop(opaque, None)
        self._check_open()
        if not answered.is_set():
            raise VirtrioTimeoutError(f"yamux session {self.name}: no ping answer in {timeout:g} s")
        return trio.current_time() - start

    async def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Tell the peer we accept no new streams (existing ones go on)."""
        self._core.go_away(code)
        self._flush()
        await trio.lowlevel.checkpoint()

    # --- tasks ------------------------------------------------------------------------------

    def _wake_writer(self) -> None:
        """Have the writer task send what is queued a few scheduling rounds from now (so
        that a SYN, ACK or FIN usually leaves together with the Data frame that follows)."""
        self._writer_wake.set()

    def _flush(self) -> None:
        """Send what is queued now, as far as the socket takes it without blocking; the
        writer task sends the rest (and everything, on transports other than sockets)."""
        if not self._core.bytes_queued:
            return
        if self._writing or self._fd < 0 or self.closed_reason is not None:
            self._writer_wake.set()
            return
        self._write_now([self._core.data_to_send()])

    def _send_data(self, stream_id: int, view: memoryview) -> int:
        """Send what the stream's credit allows of ``view`` after what is queued: written
        at once, without copying, as far as the socket takes it. Returns how much of
        ``view`` was taken."""
        if self._writing or self._fd < 0 or self.closed_reason is not None:
            taken = self._core.send_data(stream_id, view)
            self._flush()
            return taken
        frames = self._core.data_frames(stream_id, view)
        taken = sum(map(len, frames[1::2]))
        self._write_now([self._core.data_to_send(), *frames])
        return taken

    def _write_now(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        """Write ``buffers`` (the first one the core's, the others borrowed from a caller)
        as far as the socket takes them without blocking; the writer task sends the rest,
        a copy of it where it was borrowed."""
        try:
            sent = os.writev(self._fd, buffers[:_IOV_MAX])
        except OSError:  # full (EAGAIN), or broken: the writer task waits, or reports it
            sent = 0
        rest: list[bytes | bytearray | memoryview] = []
        for buffer in buffers:
            if sent >= len(buffer):
                sent -= len(buffer)
            else:
                rest.append(memoryview(buffer)[sent:] if sent else buffer)
                sent = 0
        if not rest:
            return
        owned = len(rest) == 1 and len(buffers) == 1
        self._unsent_tail = memoryview(rest[0] if owned else b"".join(rest))
        self._writing = True
        self._writer_wake.set()

    @property
    def _unsent(self) -> int:
        tail = self._unsent_tail
        return self._core.bytes_queued + (len(tail) if tail is not None else 0)

    async def _wait_drained(self) -> None:
        self._check_open()
        await self._drained.wait()

    async def _drain(self) -> None:
        """Return once everything queued has been sent (or the session ended)."""
        self._flush()
        while self._unsent and self.closed_reason is None:
            self._wake_writer()
            await self._drained.wait()

    async def _send_all(self, data: bytearray | memoryview) -> None:
        if self._fd < 0:
            await self._transport.send_all(data)
            return
        # as _receive: no scheduling round after a write the socket took whole
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)

    async def _writer(self) -> None:
        core = self._core
        send_all = self._send_all
        while True:
            await self._writer_wake.wait()
            # Frames that may wait (SYN, ACK, FIN) wait a few scheduling rounds, so they
            # usually leave in one write with the Data frame some task is about to send.
            for _ in range(_DEFER_ROUNDS):
                if self._unsent_tail is not None or not core.bytes_queued:
                    break
                await trio.lowlevel.checkpoint()
            self._writer_wake = trio.Event()
            self._writing = True
            if (tail := self._unsent_tail) is not None:
                self._unsent_tail = None
                await send_all(tail)
            while data := core.data_to_send():
                await send_all(data)
            self._writing = False
            self._drained.set()
            self._drained = trio.Event()

    async def _receive(self) -> bytes | bytearray:
        if self._fd < 0:
            return await self._transport.receive_some(_RECEIVE_SIZE)
        # A socket is read directly: one scheduling round per read instead of Trio's two
        # (wait, then a checkpoint after the read); waiting first keeps the reader fair.
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                return self._read_now()
            except BlockingIOError:
                pass

    def _read_now(self) -> bytes:
        """One non-blocking read of the socket (BlockingIOError if it has nothing)."""
        if self._scratch is None:
            data = os.read(self._fd, _RECEIVE_SIZE)
            if len(data) < _SMALL_READ:
                self._scratch = bytearray(_SMALL_READ)
            return data
        # After a small read (window updates, pings, short messages), the next one goes
        # into a small reused buffer: allocating a large buffer only to shrink it to 12
        # bytes costs more than the read itself.
        size = os.readv(self._fd, [self._scratch])
        data = bytes(memoryview(self._scratch)[:size])
        if size == _SMALL_READ:
            self._scratch = None
        return data

    def _poll_input(self) -> None:
        """Handle what the socket holds already, from a stream's reader about to park:
        when the peer's frames are there, it goes on at once, and the reader task never
        has to run."""
        if self._fd < 0 or self.closed_reason is not None:
            return
        if self._core.answers_queued > _MAX_ANSWERS:
            return  # the reader task waits for the writer; so does this input
        try:
            data = self._read_now()
        except OSError:  # nothing yet (EAGAIN), or broken: the reader task reports it
            return
        if not data:
            return  # the end of the connection stays readable: the reader task ends it
        try:
            self._handle(data)
        except (YamuxProtocolError, ConnectionLostError) as exc:
            self._fail(exc)

    def _fail(self, reason: YamuxError | ConnectionLostError) -> None:
        """End the session from outside its tasks (input handled by another task broke it)."""
        self._end(reason)
        if isinstance(reason, YamuxProtocolError) and not self._writing:  # never mid-frame
            self._core.go_away(GoAwayCode.PROTOCOL_ERROR)
            with contextlib.suppress(OSError):
                os.write(self._fd, self._core.data_to_send())
        self._tasks.cancel()

    async def _reader(self) -> None:
        core = self._core
        while True:
            # A peer that sends pings (or opens beyond the backlog) and never reads would have
            # us queue answers without bound: stop reading until the writer got them out.
            while core.answers_queued > _MAX_ANSWERS and self.closed_reason is None:
                self._wake_writer()
                await self._drained.wait()
            data = await self._receive()
            if not data:
                raise ConnectionLostError(
                    f"yamux session {self.name}: the peer closed the connection"
                )
            self._handle(data)

    def _handle(self, data: bytes | bytearray) -> None:
        """Feed bytes read to the core and deliver its events."""
        core = self._core
        for event in core.receive_data(data):
            if isinstance(event, StreamData):
                stream = self._streams.get(event.stream_id)
                if stream is None:
                    pass
                elif stream._closed:
                    # data for a stream we closed: refuse it, as TCP does, so the peer's
                    # writer fails instead of waiting forever for credit
                    core.send_reset(event.stream_id)
                    del self._streams[event.stream_id]
                else:
                    stream._feed(event.data)
            elif isinstance(event, WindowUpdated):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream._window()
            elif isinstance(event, StreamOpened):
                stream = MuxStream(self, event.stream_id)
                self._streams[event.stream_id] = stream
                self._accept_queue.append(stream)
                self._acceptable.set()
            elif isinstance(event, StreamEnded):
                if (stream := self._streams.get(event.stream_id)) is not None:
                    stream._end()
                    if stream._closed:
                        del self._streams[event.stream_id]
                        self._can_open.set()  # closed both ways: its open slot may be free
            elif isinstance(event, StreamReset):
                if (stream := self._streams.pop(event.stream_id, None)) is not None:
                    stream._broken(StreamResetError("reset by the peer"))
                self._can_open.set()  # an unacknowledged stream's open slot may be free
            elif isinstance(event, StreamAcknowledged):
                self._can_open.set()
            elif isinstance(event, PongReceived):
                if (answered := self._pongs.get(event.opaque)) is not None:
                    answered.set()
            elif isinstance(event, GoAwayReceived):
                self._can_open.set()
                if event.code != GoAwayCode.NORMAL:
                    raise ConnectionLostError(
                        f"yamux session {self.name}: the peer ended it (GoAway code {event.code})"
                    )
        if core.bytes_queued:
            self._flush()

    def _end(self, reason: BaseException) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for stream in self._streams.values():
            stream._broken(reason)
        self._acceptable.set()
        self._can_open.set()
        self._drained.set()
        for answered in self._pongs.values():
            answered.set()
        self._closed.set()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._tasks = nursery.cancel_scope
            nursery.start_soon(self._write_loop, nursery.cancel_scope)
            task_status.started()
            try:
                await self._reader()
            except YamuxProtocolError as exc:
                self._end(exc)
                with trio.move_on_after(1) as scope:
                    scope.shield = True
                    self._core.go_away(GoAwayCode.PROTOCOL_ERROR)
                    await self._transport.send_all(self._core.data_to_send())
            except ConnectionLostError as exc:
                self._end(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._end(ConnectionLostError(f"yamux session {self.name}: {exc}"))
            finally:
                self._end(ConnectionLostError(f"yamux session {self.name} closed"))
                nursery.cancel_scope.cancel()

    async def _write_loop(self, scope: trio.CancelScope) -> None:
        try:
            await self._writer()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._end(ConnectionLostError(f"yamux session {self.name}: cannot send: {exc}"))
            scope.cancel()


@asynccontextmanager
async def open_mux(
    stream: trio.abc.Stream,
    *,
    client: bool,
    window: int = DEFAULT_WINDOW,
    max_window: int | None = 16 * 1024 * 1024,
    accept_backlog: int = 256,
    drain_timeout: float = 5.0,
    name: str = "",
) -> AsyncIterator[MuxSession]:
    """Run a yamux session over ``stream`` (which it closes on exit).

    Args:
        client: True on the connecting side (it opens odd stream ids).
        window: receive window per stream (256 KiB minimum; larger ones speed up fast links
            and are announced to the peer with each stream).
        max_window: auto-tuning limit: a stream whose reader keeps up but whose writer runs
            out of credit gets its window doubled, up to this (and 64 MiB of growth over all
            streams at most), as rust-yamux does. ``None``: the window stays ``window``.
        accept_backlog: inbound streams that may wait for :meth:`MuxSession.accept_stream`;
            more are refused.
        drain_timeout: on leaving the block normally, how long frames still queued (a last
            Data frame, a FIN) may take to leave before the connection is closed anyway.
    """
    core = YamuxSession(
        client=client,
        window=window,
        max_window=None if max_window is None else max(window, max_window),
        accept_backlog=accept_backlog,
    )
    session = MuxSession(stream, core, name or ("client" if client else "server"))
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(session._run)
            try:
                yield session
                # what was queued (a last Data frame, a FIN) still leaves, if the peer reads
                with trio.move_on_after(drain_timeout):
                    await session._drain()
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
