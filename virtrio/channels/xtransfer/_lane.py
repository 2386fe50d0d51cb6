"""One xtransport connection as a half-closeable byte stream: a *lane*.

xtransport has messages but no half-close of its own (and in ack mode the socket's half-close
cannot be used: our Acks for what the peer still sends must go out). virtrio's convention, the
one ``virtrio mux serve|send --transport xtransport`` speak: a lane ends with an **empty
message**. :class:`XtransferStream` keeps it — ``send_eof()`` sends the empty message,
``receive_some()`` returns ``b""`` once the peer's arrives — so code written against a
``trio.abc.HalfCloseableStream`` (a yamux stream) runs unchanged over xtransport.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Callable

import trio

from virtrio.errors import ConnectionLostError

from ._channel import XtransferChannel
from ._wire import XtransferError

__all__ = ["XtransferLaneLostError", "XtransferStream"]

log = logging.getLogger(__name__)

#: How long :meth:`XtransferStream.aclose` may take to send the end of the lane (in ack mode,
#: to have it acknowledged), seconds.
CLOSE_TIMEOUT = 0.5

#: The largest message one ``send_all`` sends; longer data goes as several messages (the
#: peer's ``max_message_size`` bounds one message, 64 MiB by default).
SEND_CHUNK = 1024 * 1024


class XtransferLaneLostError(ConnectionLostError, trio.BrokenResourceError):
    """The connection under a lane ended before the peer ended the lane (its empty message):
    the peer was killed, or closed its end mid-conversation."""


class XtransferStream(trio.abc.HalfCloseableStream):
    """A lane over ``channel`` (an :func:`~virtrio.channels.xtransfer.open_xtransfer` channel).

    * ``send_all(data)`` sends ``data`` as one message (several above 1 MiB); ``b""`` sends
      nothing (an empty message would end the lane).
    * ``receive_some(max_bytes)`` returns the bytes of the next message (what ``max_bytes``
      left of one comes first next time); ``b""`` once the peer ended the lane.
    * ``send_eof()`` ends our side of the lane with an empty message.
    * ``send(message)`` / ``receive()`` keep message boundaries, for a peer that has them;
      ``receive()`` raises :class:`trio.EndOfChannel` at the end of the lane.
    * ``aclose()`` ends the lane if we had not (the peer reads ``b""``, as after a TCP
      close) and closes the connection; with ``keep_open=True`` (a connection that carries one
      lane after another, such as a virtio-serial port) it also reads to the peer's end of the
      lane, discarding the rest, and leaves the connection open for the next lane, unless that
      end does not come within :data:`CLOSE_TIMEOUT` (the connection is then out of step, and
      closed).

    Errors: :class:`XtransferLaneLostError` (a ``ConnectionLostError`` and a
    ``trio.BrokenResourceError``) when the connection ended or failed before the peer ended the
    lane; the :class:`~virtrio.channels.xtransfer.XtransferError` naming a protocol fault;
    ``trio.ClosedResourceError`` after our own ``aclose()`` (or a send after ``send_eof()``).
    """

    def __init__(
        self,
        channel: XtransferChannel,
        *,
        name: str = "xtransport lane",
        keep_open: bool = False,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        #: The xtransport channel of this lane's connection.
        self.channel = channel
        self.name = name
        self.keep_open = keep_open
        self._on_close = on_close
        self._pending = b""  # the rest of a message a receive_some(max_bytes) cut
        self._eof_received = False
        self._eof_sent = False
        self._closed = False
        self._receiving = False
        self._sending = False

    @property
    def lane_done(self) -> bool:
        """True once both sides ended the lane (the connection could carry another one)."""
        return self._eof_sent and self._eof_received and not self._pending

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (as one message up to 1 MiB; in ack mode, once the peer acknowledged
        it)."""
        view = memoryview(data).cast("B")
        async with self._send_guard():
            # a cancel before anything went out leaves the lane usable (one mid-message
            # does not: part of a packet may be on the wire)
            await trio.lowlevel.checkpoint_if_cancelled()
            if not view:
                await trio.lowlevel.checkpoint()
            for offset in range(0, len(view), SEND_CHUNK):
                await self._send(view[offset : offset + SEND_CHUNK])

    async def send(self, message: bytes | bytearray | memoryview) -> None:
        """Send one message, whole (not empty: that is :meth:`send_eof`)."""
        if not len(message):
            raise ValueError("an empty message ends the lane: call send_eof()")
        async with self._send_guard():
            await self._send(message)

    async def wait_send_all_might_not_block(self) -> None:
        """xtransport has no flow-control window to wait for: returns at once."""
        self._check_open()
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        """End our side of the lane (an empty message); we may go on receiving. Idempotent."""
        self._check_open()
        if self._eof_sent:
            await trio.lowlevel.checkpoint()
            return
        async with self._send_guard():
            await self._send(b"")
            self._eof_sent = True

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of the next message (default: all of it); ``b""`` at the end of
        the lane."""
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)  # TypeError for anything but an integer
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._pending:
            self._check_open()
            await trio.lowlevel.checkpoint()
            data = self._pending
        else:
            data = await self._receive_message(at_end=b"")
        if max_bytes is not None and len(data) > max_bytes:
            data, self._pending = data[:max_bytes], data[max_bytes:]
        else:
            self._pending = b""
        return data

    async def receive(self) -> bytes:
        """The next message (or what a ``receive_some`` left of one).

        Raises:
            trio.EndOfChannel: the peer ended the lane.
        """
        data, self._pending = self._pending, b""
        if data:
            await trio.lowlevel.checkpoint()
            return data
        return await self._receive_message(at_end=None)

    async def aclose(self) -> None:
        """End our side of the lane if it was not (as a socket's close is an EOF for its
        peer: the empty message, for at most :data:`CLOSE_TIMEOUT` seconds, shielded; a
        connection already broken, or a cancelled caller, just closes), then close the
        connection."""
        cancelled = trio.current_effective_deadline() == -math.inf  # then close at once
        graceful = not (cancelled or self._closed or self._eof_sent or self._sending)
        if graceful and self.channel.is_connected:
            self._eof_sent = True
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                try:
                    await self.channel.send(b"")
                except (ConnectionLostError, XtransferError, trio.BrokenResourceError) as exc:
                    log.debug("%s: the end of the lane was not sent: %s", self.name, exc)
        self._closed = True
        try:
            if not (self.keep_open and await self._finish_lane(cancelled)):
                await self.channel.aclose()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()

    async def _finish_lane(self, cancelled: bool) -> bool:
        """Read to the peer's end of the lane (discarding what comes before it), shielded, for
        at most :data:`CLOSE_TIMEOUT`; True if the connection can carry the next lane."""
        if cancelled or not self._eof_sent or not self.channel.is_connected:
            return False
        with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
            try:
                while not self._eof_received:
                    if not await self.channel.receive():
                        self._eof_received = True
            except (trio.EndOfChannel, ConnectionLostError, XtransferError) as exc:
                log.debug("%s: the peer's end of the lane did not come: %s", self.name, exc)
                return False
        if not self._eof_received:
            log.debug("%s: no end of the lane within %g s: closing", self.name, CLOSE_TIMEOUT)
        return self._eof_received

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"{self.name} is closed")

    def _send_guard(self) -> _Guard:
        self._check_open()
        if self._eof_sent:
            raise trio.ClosedResourceError(f"{self.name} was ended for sending (send_eof)")
        return _Guard(self, "_sending", "sending")

    async def _send(self, message: bytes | bytearray | memoryview) -> None:
        try:
            await self.channel.send(message)
        except (ConnectionLostError, trio.ClosedResourceError) as exc:
            # closed under the send by whoever holds the connection, once it ended
            raise self._lost(exc) from exc

    async def _receive_message(self, *, at_end: bytes | None) -> bytes:
        self._check_open()
        async with _Guard(self, "_receiving", "receiving"):
            if self._eof_received:
                await trio.lowlevel.checkpoint()
            else:
                try:
                    data = await self.channel.receive()
                except trio.EndOfChannel:
                    raise self._lost(None) from None
                except ConnectionLostError as exc:
                    raise self._lost(exc) from exc
                if data:
                    return data
                self._eof_received = True
        if at_end is None:
            raise trio.EndOfChannel(f"{self.name}: the peer ended the lane")
        return at_end

    def _lost(self, cause: BaseException | None) -> BaseException:
        if self._closed:
            return trio.ClosedResourceError(f"{self.name} is closed")
        how = f": {cause}" if cause is not None else ""
        return XtransferLaneLostError(
            f"{self.name}: the connection ended before the peer ended the lane{how}"
        )


class _Guard:
    """One task at a time sends (or receives) on a lane: another gets BusyResourceError."""

    def __init__(self, stream: XtransferStream, flag: str, what: str) -> None:
        self.stream, self.flag, self.what = stream, flag, what

    async def __aenter__(self) -> None:
        if getattr(self.stream, self.flag):
            raise trio.BusyResourceError(f"another task is {self.what} on {self.stream.name}")
        setattr(self.stream, self.flag, True)

    async def __aexit__(self, *_: object) -> None:
        setattr(self.stream, self.flag, False)
