"""yamux over any Trio stream: :func:`open_mux` and its :class:`MuxSession`.

The session runs a reader task (feeding the sans-I/O core, delivering its events to the
streams of :mod:`._stream`) and a writer task. On a socket, frames are read and written
directly by whichever task has them, and the writer task only sends what the kernel did not
take at once; on other streams the writer task sends everything (the two wires of
:mod:`._wire`). The why and the figures are in docs/yamux.md ("How bytes move").
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import trio

from virtrio.errors import ConnectionLostError, LocalProtocolError, VirtrioTimeoutError
from virtrio.primitives import open_service_nursery

from ._delivery import deliver
from ._frames import DEFAULT_WINDOW, GoAwayCode
from ._inbound import ReadTurn
from ._outbox import Outbox
from ._session import (
    YamuxError,
    YamuxProtocolError,
    YamuxSession,
)
from ._stream import MuxStream
from ._wire import Buffer, SocketWire, wire_for

__all__ = ["MuxSession", "open_mux"]

#: Answers to the peer's frames (see YamuxSession.answers_queued) that may wait unsent before
#: the reader stops reading: beyond it, the peer is flooding pings or opens and not reading.
_MAX_ANSWERS = 64 * 1024
#: Scheduling rounds a SYN, ACK, FIN or returned credit waits for a Data frame to travel with.
_DEFER_ROUNDS = 2


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
        self._drained = trio.Event()
        # A socket is written to directly, without blocking, by whichever task has bytes to
        # send; only what the kernel does not take at once is left to the writer task.
        self._wire = wire_for(transport)
        self._direct = self._wire.direct
        self._outbox = Outbox(self._wire, core)  # what the socket did not take at once
        # On a socket a stream's reader may read the input itself (see _inbound).
        self._turn = (
            ReadTurn(
                self._wire, dispatch=self._dispatch, fail=self._fail_input, may_read=self._may_read
            )
            if isinstance(self._wire, SocketWire)
            else None
        )
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
            self._want_input()
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
            self._want_input()
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
        self._want_input()
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
        if self._writing or not self._direct or self.closed_reason is not None:
            self._writer_wake.set()
            return
        self._write_now([self._core.data_to_send()])

    def _send_data(self, stream_id: int, view: memoryview, head: bytes = b"") -> int:
        """Send what the stream's credit allows of ``view`` (after ``head``, in the same
        frame: see YamuxSession.data_frames) after what is queued: written at once, without
        copying, as far as the socket takes it. Returns how much of ``view`` was taken
        (``head`` went too if it is not 0)."""
        if not self._direct or self.closed_reason is not None:
            taken = self._core.send_data(stream_id, view, head)
            self._flush()
            return taken
        core = self._core
        frames = core.data_frames(stream_id, view, head)
        if not frames:
            self._flush()
            return 0
        taken = len(frames[1]) if len(frames) == 2 else sum(map(len, frames[1::2]))
        if core.bytes_queued:  # (what is queued goes first; an empty buffer would be wasted)
            frames.insert(0, core.data_to_send())
        if self._writing:  # behind what the writer task has still to send
            self._outbox.add(frames, 0)
            self._writer_wake.set()
        else:
            self._write_now(frames)
        return taken

    def _write_now(self, buffers: list[Buffer]) -> None:
        """Write ``buffers`` (the first one the core's or a header, the others may be
        borrowed from a caller) as far as the socket takes them without blocking; the writer
        task sends the rest."""
        sent = self._wire.write_now(buffers)
        if sent < sum(map(len, buffers)):
            self._outbox.add(buffers, sent)
            self._writing = True
            self._writer_wake.set()

    @property
    def _unsent(self) -> int:
        return self._core.bytes_queued + self._outbox.size

    def _wait_drained(self) -> Awaitable[None]:
        # the caller awaits the Event's wait directly: one frame fewer at every wait
        self._check_open()
        return self._drained.wait()

    async def _drain(self) -> None:
        """Return once everything queued has been sent (or the session ended)."""
        self._flush()
        while self._unsent and self.closed_reason is None:
            self._wake_writer()
            await self._drained.wait()

    async def _writer(self) -> None:
        core = self._core
        send_all = self._wire.send_all
        while True:
            await self._writer_wake.wait()
            # Frames that may wait (SYN, ACK, FIN) wait a few scheduling rounds, so they
            # usually leave in one write with the Data frame some task is about to send.
            for _ in range(_DEFER_ROUNDS):
                if self._outbox.size or not core.bytes_queued:
                    break
                await trio.lowlevel.checkpoint()
            self._writer_wake = trio.Event()
            self._writing = True
            if self._direct:
                await self._outbox.send()
            else:
                while data := core.data_to_send():
                    await send_all(data)
            self._writing = False
            self._drained.set()
            self._drained = trio.Event()

    def _want_input(self) -> None:
        """A task is about to wait for what only input brings: have it read (see _inbound)."""
        if self._turn is not None:
            self._turn.want()

    def _may_read(self) -> bool:
        # a peer that floods pings (or opens) and never reads would have us queue answers
        # without bound: nobody reads until the writer got them out
        return self.closed_reason is None and self._core.answers_queued <= _MAX_ANSWERS

    def _dispatch(self, data: bytes | bytearray) -> None:
        """Handle bytes read by whoever holds the turn; ``b""`` is the end of the connection.

        Raises:
            ConnectionLostError: the peer closed the connection, or ended the session.
            YamuxProtocolError: the peer broke the protocol.
        """
        if not data:
            raise self._peer_closed()
        self._handle(data)

    def _peer_closed(self) -> ConnectionLostError:
        try:
            self._core.receive_data(b"")
        except YamuxProtocolError as exc:
            error = ConnectionLostError(
                f"yamux session {self.name}: the peer closed the connection: {exc}"
            )
            error.__cause__ = exc
            return error
        return ConnectionLostError(f"yamux session {self.name}: the peer closed the connection")

    def _fail_input(self, error: Exception) -> None:
        """What a stream's reader met reading the input (see _inbound) ends the session."""
        if isinstance(error, YamuxError | ConnectionLostError):
            self._fail(error)
        else:  # the socket broke, or was closed
            self._fail(ConnectionLostError(f"yamux session {self.name}: {error}"))

    def _fail(self, reason: YamuxError | ConnectionLostError) -> None:
        """End the session from outside its tasks (input handled by another task broke it)."""
        self._end(reason)
        if isinstance(reason, YamuxProtocolError) and not self._writing:  # never mid-frame
            self._core.go_away(GoAwayCode.PROTOCOL_ERROR)
            self._wire.write_now([self._core.data_to_send()])
        self._tasks.cancel()

    async def _reader(self) -> None:
        core = self._core
        receive = self._wire.receive if self._turn is None else self._turn.next_input
        while True:
            # A peer that sends pings (or opens beyond the backlog) and never reads would have
            # us queue answers without bound: stop reading until the writer got them out.
            while core.answers_queued > _MAX_ANSWERS and self.closed_reason is None:
                self._wake_writer()
                await self._drained.wait()
            self._dispatch(await receive())

    #: Feed bytes read to the core and deliver its events (see _delivery).
    _handle = deliver

    def _end(self, reason: BaseException) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        for stream in self._streams.values():
            stream._broken(reason)
        self._acceptable.set()
        self._can_open.set()
        self._drained.set()
        if self._turn is not None:
            self._turn.stop()
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
                    await self._wire.send_all(self._core.data_to_send())
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
