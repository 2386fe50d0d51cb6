"""One linked Spice channel over Trio: link, then one reader task answering the common messages.

Every channel type builds on :func:`open_channel`; the type-specific part is a ``handler``
called (synchronously, in the reader task) with each non-common message.
"""

from __future__ import annotations

import functools
import logging
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import trio

from virtrio.channels._sansio import ConnectionClosed
from virtrio.channels.spice._errors import SpiceLinkError, SpiceProtocolError
from virtrio.channels.spice._framing import (
    MSG_DISCONNECTING,
    MSG_NOTIFY,
    MSG_PING,
    MSG_SET_ACK,
    MSG_WAIT_FOR_CHANNELS,
    MSGC_PONG,
    AckWindow,
    Message,
    MessageReader,
    MessageWriter,
    Placer,
    parse_notify,
    pong_for,
)
from virtrio.channels.spice._link import ChannelType, Linked, LinkErr, SpiceLink
from virtrio.channels.spice._transport import SpiceTransport, open_transport
from virtrio.errors import ConnectionLostError
from virtrio.primitives import collapse_groups

__all__ = ["SpiceChannel", "open_channel"]

log = logging.getLogger(__name__)

#: A channel type's message hook; one that returns an awaitable makes the reader wait for it
#: (and so stop reading the socket: backpressure on the server).
Handler = Callable[[Message], Awaitable[None] | None]


def channel_name(channel_type: int) -> str:
    """``display`` for 2, etc.; the number for unknown types."""
    try:
        return ChannelType(channel_type).name.lower()
    except ValueError:
        return str(channel_type)


class SpiceChannel:
    """A linked channel: :meth:`send` messages; common messages are answered by the reader."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        channel_type: int,
        channel_id: int,
        *,
        mini_header: bool,
        server_caps: tuple[int, ...],
        address: str,
    ) -> None:
        self.channel_type = channel_type
        self.channel_id = channel_id
        #: The server's channel capability words.
        self.server_caps = server_caps
        self.address = address
        self._stream = stream
        self._reader = MessageReader(mini_header=mini_header)
        self._writer = MessageWriter(mini_header=mini_header)
        self._acks = AckWindow()
        self._send_lock = trio.Lock()
        self._closed = trio.Event()
        #: Why the channel closed (None while open or after a clean close).
        self.closed_reason: BaseException | None = None
        self.handler: Handler = lambda msg: None
        #: Messages received (top level), for tests and benchmarks.
        self.received = 0
        self._early = b""  # channel bytes that came with the link result

    @property
    def name(self) -> str:
        """E.g. ``display:0``."""
        return f"{channel_name(self.channel_type)}:{self.channel_id}"

    def place_bodies(self, placer: Placer | None) -> None:
        """Have large message bodies read where ``placer`` says (see :data:`Placer`)."""
        self._reader.placer = placer

    async def send(self, mtype: int, body: bytes = b"") -> None:
        """Send one message (writes are serialised; framing is per message)."""
        data = self._writer.frame(mtype, body)
        async with self._send_lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLostError(
                    f"Spice {self.name} connection lost: {exc}", address=self.address
                ) from None

    async def wait_closed(self) -> None:
        """Return once the connection is gone."""
        await self._closed.wait()

    @property
    def is_connected(self) -> bool:
        """Whether the connection is up."""
        return not self._closed.is_set()

    async def abort(self) -> None:
        """Close the underlying stream now (the reader then ends with a lost connection)."""
        await trio.aclose_forcefully(self._stream)

    async def _run_reader(self) -> None:
        # a plain socket is read straight into the reader's memory; TLS and WebSocket streams
        # give bytes objects that the reader copies in
        sock = self._stream.socket if isinstance(self._stream, trio.SocketStream) else None
        try:
            messages = self._reader.feed(self._early)
            self._early = b""
            while True:
                try:
                    for msg in messages:
                        await self._dispatch(msg)
                except (struct.error, IndexError, ValueError) as exc:
                    raise SpiceProtocolError(
                        f"Spice {self.name}: malformed message ({exc})"
                    ) from None
                if sock is None:
                    messages = self._reader.feed(await self._receive())
                else:
                    messages = self._reader.filled(await self._receive_into(sock))
        except (ConnectionLostError, SpiceProtocolError) as exc:
            self.closed_reason = exc
            log.info("%s: %s", self.name, exc)
        finally:
            self._closed.set()

    async def _receive(self) -> bytes | bytearray:
        try:
            data = await self._stream.receive_some(256 * 1024)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise self._lost(exc) from None
        if not data:
            raise self._lost(None)
        return data

    async def _receive_into(self, sock: trio.socket.SocketType) -> int:
        try:
            with self._reader.buffer() as view:
                n = await sock.recv_into(view)
        except (OSError, trio.ClosedResourceError) as exc:
            raise self._lost(exc) from None
        if not n:
            raise self._lost(None)
        return n

    def _lost(self, exc: BaseException | None) -> ConnectionLostError:
        if exc is None:
            return ConnectionLostError(
                f"Spice server closed the {self.name} channel", address=self.address
            )
        return ConnectionLostError(
            f"Spice {self.name} connection lost: {exc}", address=self.address
        )

    async def _dispatch(self, msg: Message) -> None:
        if not msg.sub:
            self.received += 1
        for reply in self._acks.on_message(msg):
            await self.send(*reply)
        if msg.type == MSG_PING:
            await self.send(MSGC_PONG, pong_for(msg.body))
        elif msg.type == MSG_NOTIFY:
            note = parse_notify(msg.body)
            log.info("%s: server notice: %s", self.name, note.text)
        elif msg.type == MSG_DISCONNECTING:
            reason = struct.unpack_from("<I", msg.body, 8)[0] if len(msg.body) >= 12 else 0
            raise ConnectionLostError(
                f"Spice server is disconnecting the {self.name} channel (reason {reason})",
                address=self.address,
            )
        elif msg.type in (MSG_SET_ACK, MSG_WAIT_FOR_CHANNELS, 8):
            # ACK handled above; waits only order cross-channel caches, which we do not keep
            pass
        elif (pending := self.handler(msg)) is not None:
            await pending


async def _link(
    stream: trio.abc.Stream,
    *,
    connection_id: int,
    channel_type: int,
    channel_id: int,
    channel_caps: tuple[int, ...],
    password: str,
) -> tuple[Linked, bytes]:
    """Drive the sans-I/O :class:`SpiceLink` over ``stream``; returns its outcome and the
    channel bytes that came with the link result."""
    link = SpiceLink(
        channel_type=channel_type,
        channel_id=channel_id,
        connection_id=connection_id,
        password=password,
        channel_caps=channel_caps,
    )
    while True:
        before = link.state  # a close makes it CLOSED: say what was awaited
        event = link.next_event()
        if out := link.data_to_send():
            await stream.send_all(out)
        if isinstance(event, Linked):
            return event, link.trailing_data
        if isinstance(event, ConnectionClosed):
            raise ConnectionLostError(f"server closed the connection while sending {before.value}")
        waiting = link.state.value
        try:
            data = await stream.receive_some(link.bytes_wanted)
        except trio.BrokenResourceError as exc:
            raise ConnectionLostError(f"connection lost while reading {waiting}: {exc}") from None
        link.receive_data(data)


@asynccontextmanager
async def open_channel(
    transport: SpiceTransport,
    channel_type: int,
    channel_id: int = 0,
    *,
    secure: SpiceTransport | None = None,
    connection_id: int = 0,
    password: str = "",
    channel_caps: tuple[int, ...] = (),
    connect_timeout: float = 10.0,
    setup: Callable[[SpiceChannel], None] | None = None,
) -> AsyncIterator[SpiceChannel]:
    """Connect and link one channel (within ``connect_timeout``), run its reader, yield it;
    closed on exit.

    ``setup`` is called before the reader starts (to install a handler so no message is missed).
    When the server answers NEED_SECURED (a TLS-only channel on the plain port) and ``secure``
    (the TLS port) is given, the channel is linked there instead, as spice-gtk does.

    Raises:
        SpicePermissionError: wrong or missing password.
        SpiceLinkError: any other link refusal (its ``code`` is the SpiceLinkErr).
        ConnectError / VirtrioTimeoutError: the server could not be reached in time.
    """
    async with AsyncExitStack() as stack:
        once = functools.partial(
            _open_once,
            channel_type=channel_type,
            channel_id=channel_id,
            connection_id=connection_id,
            password=password,
            channel_caps=channel_caps,
            timeout=connect_timeout,
            setup=setup,
        )
        try:
            channel = await stack.enter_async_context(once(transport))
        except SpiceLinkError as exc:
            if exc.code != LinkErr.NEED_SECURED or secure is None:
                raise
            channel = await stack.enter_async_context(once(secure))
        yield channel


@asynccontextmanager
async def _open_once(
    transport: SpiceTransport,
    channel_type: int,
    channel_id: int = 0,
    *,
    connection_id: int = 0,
    password: str = "",
    channel_caps: tuple[int, ...] = (),
    timeout: float = 10.0,
    setup: Callable[[SpiceChannel], None] | None = None,
) -> AsyncIterator[SpiceChannel]:
    from virtrio.errors import VirtrioTimeoutError

    address = str(transport.address)
    kind = channel_name(channel_type)
    async with open_transport(transport, timeout=timeout) as stream:
        try:
            with trio.fail_after(timeout):
                linked, early = await _link(
                    stream,
                    connection_id=connection_id,
                    channel_type=channel_type,
                    channel_id=channel_id,
                    channel_caps=channel_caps,
                    password=password,
                )
        except trio.TooSlowError:
            raise VirtrioTimeoutError(
                f"Spice {kind}:{channel_id} link with {address} took over {timeout:g} s"
            ) from None
        except SpiceLinkError as exc:
            exc.address = address
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(
                f"Spice {kind}:{channel_id} link with {address} failed: {exc}", address=address
            ) from None
        channel = SpiceChannel(
            stream,
            channel_type,
            channel_id,
            mini_header=linked.mini_header,
            server_caps=linked.channel_caps,
            address=address,
        )
        channel._early = early
        if setup is not None:
            setup(channel)
        with collapse_groups():
            async with trio.open_nursery() as nursery:
                nursery.start_soon(channel._run_reader)
                try:
                    yield channel
                finally:
                    nursery.cancel_scope.cancel()
