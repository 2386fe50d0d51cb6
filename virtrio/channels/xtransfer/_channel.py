"""xtransport over any Trio stream: :func:`open_xtransfer` gives a ``trio.abc.Channel[bytes]``."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NoReturn

import trio

from virtrio.errors import ConnectionLostError, VirtrioError
from virtrio.primitives import Mutex, open_service_nursery

from ._io import io_for
from ._protocol import (
    NEED_DATA,
    ConnectionClosed,
    Message,
    MessageDelivered,
    XtransferConfig,
    XtransferProtocol,
)
from ._wire import XtransferError

__all__ = ["XtransferChannel", "open_xtransfer"]

log = logging.getLogger(__name__)


class XtransferChannel(trio.abc.Channel[bytes]):
    """Messages over one xtransport connection; made by :func:`open_xtransfer`.

    ``send`` may be called by several tasks at once (messages go out whole, in call order);
    in ack mode it returns once the peer acknowledged the message's last packet. ``receive``
    raises :class:`trio.EndOfChannel` when the peer closed the stream between messages,
    :class:`~virtrio.errors.ConnectionLostError` when the stream failed, and the
    :class:`XtransferError` subclass naming the fault when the peer broke the protocol.

    Who reads the stream: without acks, the task that waits for something to arrive
    (``receive`` with no message buffered, or ``wait_closed``) reads it itself, so a message
    costs no hand-off between tasks; one task reads at a time and the others wait for what it
    reads. In ack mode a reader task reads all the time, since the peer's packets must be
    acknowledged whether or not anyone receives.
    """

    def __init__(
        self, stream: trio.abc.Stream, protocol: XtransferProtocol, *, receive_buffer: int = 64
    ) -> None:
        if receive_buffer < 1:
            raise ValueError("receive_buffer must be at least 1")
        self.stream = stream
        self.protocol = protocol
        self._io = io_for(stream)
        self._inbox: deque[bytes] = deque()
        self._limit = receive_buffer
        # a task is in a read of the stream; tasks in receive() that found nothing buffered
        self._reading = False
        self._receivers = 0
        # woken when a message arrived, a read ended, the reading stopped or the inbox drained
        self._changed = trio.lowlevel.ParkingLot()
        # the send turn: one task writes at a time, the others wait in order (a StrictFIFOLock
        # without its per-acquire bookkeeping, ~3% of a 64 KiB message's CPU)
        self._send_turn = Mutex()  # one message on the wire at a time, in FIFO order
        self._delivered: dict[int, trio.Event] = {}
        self._acknowledged: set[int] = set()
        self._reader_done = False
        self._done = trio.Event()  # the reading stopped: nothing more can arrive
        self._error: VirtrioError | None = None
        self._peer_closed = False
        self._closed = False

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways (without acks, as far as the last read
        of the stream showed: the peer's end is seen by the next ``receive`` or
        ``wait_closed``)."""
        return not (self._closed or self._peer_closed or self._error is not None)

    async def send(self, value: bytes | bytearray | memoryview) -> None:
        """Send one message (any length up to the peer's ``max_message_size``).

        Raises:
            ConnectionLostError: the stream failed or was closed.
            XtransferError: the peer broke the protocol (the connection is unusable).
        """
        self._check_usable()
        ticket = self.protocol.send_message(value)
        delivered = None
        if self.protocol.config.ack:
            delivered = self._delivered[ticket] = trio.Event()
        await self._flush()
        if delivered is not None:
            try:
                if not self._reader_done:
                    await delivered.wait()
            finally:
                self._delivered.pop(ticket, None)
            if ticket not in self._acknowledged:
                self._check_usable()
                raise ConnectionLostError(
                    "the peer closed the connection before acknowledging the message"
                )
            self._acknowledged.discard(ticket)

    async def receive(self) -> bytes:
        """The next message from the peer.

        Raises:
            trio.EndOfChannel: the peer closed the stream (after every message was received).
            ConnectionLostError: the stream failed.
            XtransferError: the peer broke the protocol.
        """
        inbox = self._inbox
        if inbox:
            await trio.lowlevel.checkpoint_if_cancelled()
            message = self._take()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return message
        self._receivers += 1
        try:
            while not inbox:
                if self._reader_done:
                    self._raise_end()
                if self._reading or self.protocol.config.ack:
                    await self._changed.park()  # another task reads for us
                else:
                    await self._read()  # a checkpoint: the read waits for the socket first
        finally:
            self._receivers -= 1
            if not self._receivers and self._changed:
                self._changed.unpark_all()  # a wait_closed that stepped aside may read now
        return self._take()

    def _take(self) -> bytes:
        inbox = self._inbox
        message = inbox.popleft()
        if len(inbox) == self._limit - 1 and self._changed:
            self._changed.unpark_all()  # a reader held up by a full inbox may go on
        return message

    def _raise_end(self) -> NoReturn:
        if self._error is not None:
            raise self._error
        raise trio.EndOfChannel

    async def send_eof(self) -> None:
        """Half-close: the peer sees end of stream after our last message (the stream must be
        a ``trio.abc.HalfCloseableStream``, as TCP, Unix and vsock socket streams are).

        In ack mode our Acks for whatever the peer still sends cannot go out any more: end an
        ack-mode conversation with a message of your own instead.
        """
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise TypeError(f"{type(self.stream).__name__} cannot be half-closed")
        await self._take_send_turn()
        try:
            await self.stream.send_eof()
        finally:
            self._pass_send_turn()

    async def wait_closed(self) -> None:
        """Return once nothing more can arrive: the peer closed the stream, it failed, the
        peer broke the protocol, or we closed it (messages already received stay readable).

        Without acks this reads the stream while no ``receive`` does, keeping what arrives
        for ``receive`` (at most ``receive_buffer`` messages: then it waits for them to be
        taken before it reads on).
        """
        while not self._reader_done and not self.protocol.config.ack:
            if self._reading or self._receivers or len(self._inbox) >= self._limit:
                await self._changed.park()
            else:
                await self._read()
        await self._done.wait()

    async def aclose(self) -> None:
        """Close the stream; pending and later calls fail with ConnectionLostError."""
        self._closed = True
        self._fail_senders()
        try:
            await self.stream.aclose()
        finally:
            self._finish()

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ConnectionLostError("the xtransport channel is closed")

    def _fail_senders(self) -> None:
        for event in self._delivered.values():
            event.set()

    async def _take_send_turn(self) -> None:
        # a cancel point either way; uncontended, no trip through the scheduler (the write
        # makes one)
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._send_turn.acquire()

    def _pass_send_turn(self) -> None:
        self._send_turn.release()

    async def _flush(self) -> None:
        await self._take_send_turn()
        try:
            buffers = self.protocol.buffers_to_send()
            if not buffers:
                return
            try:
                await self._io.send(buffers)
            except BaseException as exc:
                # part of a packet may be on the wire: nothing can be sent after it
                if self._error is None:
                    self._error = ConnectionLostError(
                        f"xtransport send failed: {exc!r}"
                        if not isinstance(exc, trio.Cancelled)
                        else "a send was cancelled mid-message; the stream is unusable"
                    )
                self._fail_senders()
                if isinstance(exc, trio.BrokenResourceError | OSError):
                    raise self._error from exc
                raise
        finally:
            self._pass_send_turn()

    async def _read(self) -> None:
        """One read of the stream, by whichever task needs input, parsed at once: messages go
        to the inbox, Acks to the senders waiting for them; the end of the stream or its
        failure stops the reading."""
        self._reading = True
        try:
            data = await self._io.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._reading = False
            if not self._closed and self._error is None:
                self._error = ConnectionLostError(f"xtransport stream failed: {exc!r}")
            self._finish()
            return
        except BaseException:  # cancelled: another task may take over the reading
            self._reading = False
            self._changed.unpark_all()
            raise
        self._reading = False
        protocol, inbox = self.protocol, self._inbox
        try:
            protocol.receive_data(data)
            while (event := protocol.next_event()) is not NEED_DATA:
                if type(event) is Message:
                    inbox.append(event.data)
                elif isinstance(event, MessageDelivered):
                    waiter = self._delivered.get(event.ticket)
                    if waiter is not None:
                        self._acknowledged.add(event.ticket)
                        waiter.set()
                elif isinstance(event, ConnectionClosed):
                    self._peer_closed = True
                    self._finish()
        except XtransferError as exc:
            self._error = exc
            log.info("xtransport peer broke the protocol: %s", exc)
            self._finish()
            await trio.aclose_forcefully(self.stream)
        if self._changed:  # (the usual case, one receiver reading for itself: nobody)
            self._changed.unpark_all()

    def _finish(self) -> None:
        """Nothing more can arrive: wake everyone who waits for something to."""
        if not self._reader_done:
            self._reader_done = True
            self._done.set()
            self._fail_senders()
            self._changed.unpark_all()

    async def _run_reader(self) -> None:
        """Ack mode: read all the time (the peer's packets must be acknowledged whether or not
        anyone receives), up to ``receive_buffer`` messages ahead; send our Acks (and the
        packets they release) after each read."""
        try:
            while not self._reader_done:
                if len(self._inbox) >= self._limit:
                    await self._changed.park()  # back-pressure: a receive makes room
                    continue
                await self._read()
                if self._error is None:
                    await self._flush()  # our Acks before blocking again
        except ConnectionLostError as exc:
            # our Acks could not go out: _flush already recorded the error
            if not self._closed and self._error is None:
                self._error = exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            if not self._closed and self._error is None:  # closed under the flush
                self._error = ConnectionLostError(f"xtransport stream failed: {exc!r}")
        finally:
            self._finish()


@asynccontextmanager
async def open_xtransfer(
    stream: trio.abc.Stream,
    config: XtransferConfig | None = None,
    *,
    receive_buffer: int = 64,
) -> AsyncIterator[XtransferChannel]:
    """Run xtransport over ``stream`` (owned from now on: closed on exit).

    Without acks the stream is read by the tasks that wait for it (see
    :class:`XtransferChannel`); in ack mode a reader task parses the peer's packets and answers
    Acks, and up to ``receive_buffer`` messages wait for :meth:`~XtransferChannel.receive`
    before it stops reading (back-pressure, which also holds up the Acks our own sends wait
    for). A ``wait_closed`` that reads while nobody receives keeps at most ``receive_buffer``
    messages too.
    """
    channel = XtransferChannel(stream, XtransferProtocol(config), receive_buffer=receive_buffer)
    async with open_service_nursery() as nursery:
        if channel.protocol.config.ack:
            nursery.start_soon(channel._run_reader)
        try:
            yield channel
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await channel.aclose()
