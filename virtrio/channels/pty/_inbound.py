"""Who reads the PTY client's socket: :class:`Inbound`.

Everything the daemon sends (replies and events) arrives on one socket, which one task at a
time reads. Usually that is the client's reader task. But a subscriber that asks for the next
event while none is queued (a keystroke's echo: the interactive path) reads the socket itself,
in its own task, instead of waiting for the reader task to read it and hand the event over:
that hand-over costs a pass through the scheduler (the reader's wake-up and the subscriber's
wake-up are two rounds of the run loop) on every echo. Whoever reads dispatches everything it
decodes the same way: replies to their calls, events to the queue, in order::

    inbound = Inbound(stream, calls, events, lose=...)
    nursery.start_soon(inbound.run_reader)      # reads while no subscriber does
    event = await inbound.next_event()           # a subscriber: the queue's next event

The hand-over of the socket:

* a subscriber takes it only while the reader task waits for data (it holds nothing read then)
  or nobody holds it; it wakes the reader out of its wait, and the reader, seeing it holds the
  socket no more, parks until the subscriber is done;
* a subscriber reads until at least one event is queued (replies it reads meanwhile are
  handed to their calls), then gives the socket back and wakes the reader;
* decoding stops while the queue is full (the rest stays in the decoder, in order), which is
  what stops the socket being read when nobody consumes the events: the daemon then warns.

Only a plain socket (:class:`trio.SocketStream`) can be waited on from either task; on any
other stream the reader task reads alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from virtrio.channels._correlator import Correlator
from virtrio.errors import ConnectionLostError
from virtrio.primitives import DirectReads, SpinPolicy

from ._codec import (
    NEED_DATA,
    ConnectionClosed,
    FrameDecoder,
    PtyProtocolError,
    TruncatedFrameError,
)
from ._messages import (
    EVENT_TYPES,
    BackpressureWarning,
    Created,
    Error,
    Exit,
    Message,
    Ok,
    Output,
    Sessions,
)
from ._queue import EventQueue

__all__ = ["Inbound", "PtyEvent"]

PtyEvent = Output | Exit | BackpressureWarning | Error

_RECEIVE_SIZE = 256 * 1024

#: How long after a subscriber gave the socket back the reader task looks whether one holds it
#: again, and takes it back if not (seconds)...
_LEND = 0.005
#: ...doubled each time it finds a subscriber holding it, up to this: a subscriber iterating a
#: flood comes back for every event, and the reader's look every 5 ms cost 10 subscribers of a
#: cat about a fifth of their CPU (measured 2026-12-04). Back to _LEND once the reader reads again.
_LEND_MAX = 0.16

_READER, _SUBSCRIBER = "reader", "subscriber"


class Inbound:
    """The client's socket, read by its reader task or by a waiting subscriber (see the
    module). ``lose(reason)`` records why the connection ended (the first reason counts)."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        calls: Correlator[Message],
        events: EventQueue[PtyEvent],
        *,
        lose: Callable[[ConnectionLostError], None],
        spin: float = 0.0,
    ) -> None:
        self._stream = stream
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        self._calls = calls
        self._events = events
        self._lose = lose
        self._decoder = FrameDecoder(max_frame_size=2**31, accept=EVENT_TYPES)
        self._last_error: Error | None = None
        self._held: PtyEvent | None = None  # decoded, waiting for room in the queue
        self._ended = False
        # who reads the socket now: _READER, _SUBSCRIBER or None
        self._holder: str | None = None
        # the reader task's wait for data, while it waits (a subscriber may take over then)
        self._reader_wait: trio.CancelScope | None = None
        # the reader task's nap while a subscriber holds the socket (or just gave it back)
        self._nap: trio.CancelScope | None = None
        # the socket's fd, read directly (waiting first after a short read)
        self._reads = DirectReads(self._socket) if self._socket is not None else None
        # how long a subscriber polls the socket, after input, for its echo (see expect_echo)
        # (a fair one: never while another task of this program is ready, but the reader task
        # that a subscriber's take-over just woke, which only goes back to its nap)
        self._spin = SpinPolicy(spin, fair=True)
        self._expecting = False
        self._woke_reader = False
        self._lend = _LEND

    # ---- the two readers ---------------------------------------------------------------------

    async def run_reader(self, *, task_status: trio.TaskStatus[None]) -> None:
        """The client's reader task: reads while no subscriber does, until the end."""
        task_status.started()
        try:
            while not self._ended:
                if self._holder is _SUBSCRIBER:
                    # until the subscriber gives the socket back and does not come back for
                    # it at once (see _give_back), or the reader is needed
                    with trio.CancelScope() as self._nap:
                        await trio.sleep_forever()
                    self._nap = None
                    if self._holder is _SUBSCRIBER:  # still (or again) in use: look less often
                        self._lend = min(2 * self._lend, _LEND_MAX)
                    continue
                self._lend = _LEND
                self._holder = _READER
                if self._decoded_all():
                    await self._read_as_reader()
                else:  # the queue is full: decode the rest once there is room
                    await self._events.wait_room()
                if self._holder is _READER:
                    self._holder = None
        except Exception as exc:
            self._fail(exc)
        finally:
            if self._holder is _READER:
                self._holder = None
            self._end(ConnectionLostError("the client was closed"))

    async def next_event(self) -> PtyEvent:
        """The next event (a subscriber's receive); reads the socket itself when none is queued
        and it may (see the module).

        Raises:
            trio.EndOfChannel: the connection ended and every event was received.
        """
        events = self._events
        if events or not self._take_over():
            return await events.get()
        try:
            while not events and not self._ended:
                # (what the decoder held first: it may queue an event, then nothing is read)
                if self._decoded_all() and not events:
                    await self._read()
        except Exception as exc:
            self._fail(exc)
        finally:
            self._give_back()
        if not events:
            return await events.get()  # ended: EndOfChannel
        # (the read was the schedule point)
        await trio.lowlevel.checkpoint_if_cancelled()
        return events.get_nowait()

    def expect_echo(self) -> None:
        """Input was sent: the next read of a subscriber that finds the socket empty polls it
        for the spin's window before it parks (one window per input)."""
        self._expecting = True

    def wake_reader(self) -> None:
        """Someone waits for what the socket brings (a call for its reply): make sure it is
        read now, by the reader task if no subscriber holds the socket."""
        if self._holder is None and (nap := self._nap) is not None:
            nap.cancel()

    def _give_back(self) -> None:
        """A subscriber is done with the socket. The reader task looks again a moment after
        the first hand-back of its nap (_LEND, doubling up to _LEND_MAX while it keeps finding
        a subscriber holding the socket) and takes the socket back if none holds it then (a
        subscriber iterating events comes back at once: waking the reader in between would
        cost a pass through the scheduler per event; moving the deadline at every hand-back
        would cost more than the reader's look), or now if someone else waits (a call, another
        subscriber)."""
        self._holder = None
        if (nap := self._nap) is not None:
            if self._events.getters or self._calls.in_flight or self._ended:
                nap.cancel()
            elif nap.deadline == math.inf:
                nap.deadline = trio.current_time() + self._lend

    def _take_over(self) -> bool:
        """Make this subscriber the socket's reader, if it may be now."""
        if self._socket is None or self._ended:
            return False
        if self._holder is None:
            self._holder = _SUBSCRIBER
            return True
        if self._holder is _READER and (wait := self._reader_wait) is not None:
            # the reader task holds nothing read: stop its wait (it checks the holder before
            # reading, so even a wake-up already on its way reads nothing)
            wait.cancel()
            self._reader_wait = None
            self._holder = _SUBSCRIBER
            self._woke_reader = True
            return True
        return False

    # ---- reading -----------------------------------------------------------------------------

    async def _read_as_reader(self) -> None:
        reads = self._reads
        if reads is None:
            self._receive(await self._stream.receive_some(_RECEIVE_SIZE))
            return
        if reads.drained:
            with trio.CancelScope() as self._reader_wait:
                await trio.lowlevel.wait_readable(reads.socket)
            self._reader_wait = None
            if self._holder is not _READER:
                return  # a subscriber took the socket over meanwhile: it reads, not this
            reads.waited()
        await self._read()

    async def _read(self) -> None:
        """Read one chunk from the socket and dispatch it (the socket's holder)."""
        reads = self._reads
        assert reads is not None
        spin = None
        if self._expecting:
            self._expecting = False
            spin = self._spin
        woke, self._woke_reader = self._woke_reader, False
        self._receive(await reads.read(_RECEIVE_SIZE, settle=False, spin=spin, ready_ok=int(woke)))
        await reads.settle()  # (after the dispatch: what was read is never held over a yield)

    def _receive(self, data: bytes | bytearray) -> None:
        self._decoder.receive_data(data)
        self._decoded_all()

    def _decoded_all(self) -> bool:
        """Dispatch what the decoder holds; False if an event waits for room in the queue
        (held, as the reader task of old held it waiting in ``put``: replies before it were
        handed over, the rest stays in the decoder)."""
        decoder = self._decoder
        events = self._events
        calls = self._calls
        if (held := self._held) is not None:
            if not events.has_room():
                return False
            self._held = None
            events.put_nowait(held)
        while True:
            message = decoder.next_message()
            if message is NEED_DATA:
                return True
            if isinstance(message, ConnectionClosed):
                why = f": {self._last_error.message}" if self._last_error else ""
                self._end(ConnectionLostError(f"the daemon closed the connection{why}"))
                return True
            if isinstance(message, Created | Sessions | Ok) or (
                isinstance(message, Error) and message.id is not None
            ):
                calls.complete(message.id, message)
                continue
            if isinstance(message, Error):
                self._last_error = message
            if not events.has_room():
                self._held = message  # type: ignore[assignment]
                return False
            events.put_nowait(message)  # type: ignore[arg-type]

    # ---- the end -----------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> None:
        why = f": {self._last_error.message}" if self._last_error else ""
        if isinstance(exc, TruncatedFrameError):
            self._end(ConnectionLostError(f"the daemon closed the connection mid-frame{why}"))
        elif isinstance(exc, PtyProtocolError):
            self._end(ConnectionLostError(f"bad frame from the pty daemon: {exc}"))
        elif isinstance(exc, trio.BrokenResourceError | trio.ClosedResourceError | OSError):
            self._end(ConnectionLostError(f"connection lost: {exc}"))
        else:
            raise exc

    def _end(self, reason: ConnectionLostError) -> None:
        self._lose(reason)  # before the queue closes: iterators end, then can ask why
        self._ended = True
        self._events.close()
        if self._nap is not None:
            self._nap.cancel()
