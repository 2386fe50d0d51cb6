"""xtransport over any Trio stream: :func:`open_xtransfer` gives a ``trio.abc.Channel[bytes]``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.errors import ConnectionLostError, VirtrioError
from virtrio.primitives import open_service_nursery

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

_RECEIVE_SIZE = 256 * 1024


class XtransferChannel(trio.abc.Channel[bytes]):
    """Messages over one xtransport connection; made by :func:`open_xtransfer`.

    ``send`` may be called by several tasks at once (messages go out whole, in call order);
    in ack mode it returns once the peer acknowledged the message's last packet. ``receive``
    raises :class:`trio.EndOfChannel` when the peer closed the stream between messages,
    :class:`~virtrio.errors.ConnectionLostError` when the stream failed, and the
    :class:`XtransferError` subclass naming the fault when the peer broke the protocol.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: XtransferProtocol,
        receive_channel: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        self.stream = stream
        self.protocol = protocol
        self._messages = receive_channel
        self._send_lock = trio.StrictFIFOLock()
        self._delivered: dict[int, trio.Event] = {}
        self._acknowledged: set[int] = set()
        self._reader_done = False
        self._done = trio.Event()  # the reader stopped: nothing more can arrive
        self._error: VirtrioError | None = None
        self._peer_closed = False
        self._closed = False

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways."""
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
        try:
            return await self._messages.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise
        except trio.ClosedResourceError:
            raise ConnectionLostError("the xtransport channel is closed") from None

    async def send_eof(self) -> None:
        """Half-close: the peer sees end of stream after our last message (the stream must be
        a ``trio.abc.HalfCloseableStream``, as TCP, Unix and vsock socket streams are).

        In ack mode our Acks for whatever the peer still sends cannot go out any more: end an
        ack-mode conversation with a message of your own instead.
        """
        if not isinstance(self.stream, trio.abc.HalfCloseableStream):
            raise TypeError(f"{type(self.stream).__name__} cannot be half-closed")
        async with self._send_lock:
            await self.stream.send_eof()

    async def wait_closed(self) -> None:
        """Return once nothing more can arrive: the peer closed the stream, it failed, the
        peer broke the protocol, or we closed it (messages already received stay readable)."""
        await self._done.wait()

    async def aclose(self) -> None:
        """Close the stream; pending and later calls fail with ConnectionLostError."""
        self._closed = True
        self._fail_senders()
        await self.stream.aclose()

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ConnectionLostError("the xtransport channel is closed")

    def _fail_senders(self) -> None:
        for event in self._delivered.values():
            event.set()

    async def _flush(self) -> None:
        lock = self._send_lock
        if lock.locked():
            await lock.acquire()
        else:  # the usual case: no trip through the scheduler here, send_all makes one
            await trio.lowlevel.checkpoint_if_cancelled()
            lock.acquire_nowait()
        try:
            data = self.protocol.data_to_send()
            if not data:
                return
            try:
                await self.stream.send_all(data)
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
            lock.release()

    async def _reader(self, send_channel: trio.MemorySendChannel[bytes]) -> None:
        async with send_channel:
            try:
                await self._read_loop(send_channel)
            except XtransferError as exc:
                self._error = exc
                log.info("xtransport peer broke the protocol: %s", exc)
                await trio.aclose_forcefully(self.stream)
            except ConnectionLostError as exc:
                # our Acks could not go out (ack mode): _flush already recorded the error
                if not self._closed and self._error is None:
                    self._error = exc
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if not self._closed:
                    self._error = ConnectionLostError(f"xtransport stream failed: {exc!r}")
            finally:
                self._reader_done = True
                self._done.set()
                self._fail_senders()

    async def _read_loop(self, send_channel: trio.MemorySendChannel[bytes]) -> None:
        protocol = self.protocol
        while True:
            data = await self.stream.receive_some(_RECEIVE_SIZE)
            protocol.receive_data(data)
            if protocol.config.ack:
                await self._flush()  # our Acks (and packets they released) before blocking
            while True:
                event = protocol.next_event()
                if event is NEED_DATA:
                    break
                if isinstance(event, Message):
                    try:  # the reader checkpoints in receive_some: none needed per message
                        send_channel.send_nowait(event.data)
                    except trio.WouldBlock:
                        await send_channel.send(event.data)
                elif isinstance(event, MessageDelivered):
                    waiter = self._delivered.get(event.ticket)
                    if waiter is not None:
                        self._acknowledged.add(event.ticket)
                        waiter.set()
                elif isinstance(event, ConnectionClosed):
                    self._peer_closed = True
                    return


@asynccontextmanager
async def open_xtransfer(
    stream: trio.abc.Stream,
    config: XtransferConfig | None = None,
    *,
    receive_buffer: int = 64,
) -> AsyncIterator[XtransferChannel]:
    """Run xtransport over ``stream`` (owned from now on: closed on exit).

    A reader task parses the peer's packets and answers Acks; up to ``receive_buffer``
    messages wait for :meth:`~XtransferChannel.receive` before it stops reading (back-pressure;
    in ack mode that also holds up the Acks our own sends wait for).
    """
    send_channel, receive_channel = trio.open_memory_channel[bytes](receive_buffer)
    channel = XtransferChannel(stream, XtransferProtocol(config), receive_channel)
    async with open_service_nursery() as nursery:
        nursery.start_soon(channel._reader, send_channel)
        try:
            yield channel
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await channel.aclose()
