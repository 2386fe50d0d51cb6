"""Virga's application layer on Trio: :class:`MessageClient`, :class:`MessageServer` and the
:class:`MessageConnection` both hand out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import (
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

import trio

from virtrio.channels._addresses import Address, open_stream
from virtrio.channels._serving import ServerStatistics, StreamServer
from virtrio.errors import ConnectionLostError, LocalProtocolError, VirtrioTimeoutError
from virtrio.primitives._deprecated import warn_renamed

from ._config import ClientConfig, ServerConfig
from ._middleware import Middleware
from ._transports import MessageChannel, Transport, XtransportTransport, YamuxTransport

if TYPE_CHECKING:  # imported only when used
    from virtrio.channels.xtransfer import XtransferConfig

__all__ = [
    "MessageClient",
    "MessageConnection",
    "MessageServer",
    "with_xtransport",
    "with_yamux",
]


def with_xtransport(config: XtransferConfig | None = None) -> Transport:
    """The xtransport transport (frame size and ack mode from ``config``; virga uses
    ``XtransferConfig(max_frame_size=1024)``, any frame size interoperates)."""
    return XtransportTransport(config)


def with_yamux() -> Transport:
    """The yamux transport, framed as virga frames it (one stream, 8-byte big-endian lengths),
    so a virga peer built with ``use-yamux`` can be either end."""
    return YamuxTransport()


class MessageConnection:
    """One connection carrying whole messages (virga's ``send``/``recv``/``disconnect``).

    Sends may come from several tasks at once; one task receives at a time. Iterating yields
    messages until the peer disconnects.
    """

    def __init__(
        self,
        channel: MessageChannel,
        *,
        peer: Address,
        transport: str,
        call_timeout: float | None,
        ping: Callable[[float], Awaitable[float]] | None = None,
        wait_closed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._channel = channel
        #: The address of the other end (the server's, on a client).
        self.peer = peer
        #: ``"xtransport"`` or ``"yamux"``.
        self.transport = transport
        #: The deadline of a send or receive that passes ``timeout=None`` (None: no deadline).
        self.call_timeout = call_timeout
        self._ping = ping
        self._wait_closed = wait_closed

    @property
    def is_connected(self) -> bool:
        """True while messages can flow both ways (virga's ``is_active``)."""
        return self._channel.is_connected

    @property
    def is_active(self) -> bool:
        """Deprecated name of :attr:`is_connected`."""
        warn_renamed("MessageConnection", "is_active", "is_connected")
        return self.is_connected

    @property
    def io_timeout(self) -> float | None:
        """Deprecated name of :attr:`call_timeout`."""
        warn_renamed("MessageConnection", "io_timeout", "call_timeout")
        return self.call_timeout

    async def send(self, message: bytes, *, timeout: float | None = None) -> None:
        """Send one message.

        Raises:
            ConnectionLostError: the connection failed or was closed.
            ProtocolError: the peer broke the transport's protocol earlier.
            VirtrioTimeoutError: ``timeout`` (default ``call_timeout``) seconds passed.
        """
        if timeout is None and self.call_timeout is None:  # no deadline to set up
            await self._channel.send(message)
            return
        with self._deadline(timeout, "sending a message"):
            await self._channel.send(message)

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message (virga's ``recv``).

        Raises:
            ConnectionLostError: the peer disconnected, or the connection failed.
            ProtocolError: the peer broke the transport's protocol.
            VirtrioTimeoutError: ``timeout`` (default ``call_timeout``) seconds passed.
        """
        try:
            if timeout is None and self.call_timeout is None:  # no deadline to set up
                return await self._channel.receive()
            with self._deadline(timeout, "waiting for a message"):
                return await self._channel.receive()
        except trio.EndOfChannel:
            raise ConnectionLostError(f"{self.peer} disconnected", address=str(self.peer)) from None

    async def wait_closed(self) -> None:
        """Return once the connection can carry nothing more (it ended, failed or was
        closed); messages that arrived before stay readable."""
        if self._wait_closed is None:
            await trio.sleep_forever()
        else:
            await self._wait_closed()

    @property
    def can_ping(self) -> bool:
        """Whether the transport has a ping of its own (yamux does, xtransport does not)."""
        return self._ping is not None

    async def ping(self, *, timeout: float = 10.0) -> float:
        """Ping the peer's transport (yamux answers pings itself, whatever the application
        is doing); returns the round trip in seconds.

        Raises:
            LocalProtocolError: the transport has no ping (xtransport).
            VirtrioTimeoutError: no answer within ``timeout``.
            ConnectionLostError: the connection ended.
        """
        if self._ping is None:
            raise LocalProtocolError(f"{self.transport} has no ping: give the health check a probe")
        return await self._ping(timeout)

    async def disconnect(self) -> None:
        """Close the connection; the peer's receive ends."""
        await self._channel.aclose()

    # an iterator, not an async generator: breaking out of ``async for`` (or being cancelled
    # in it) leaves nothing to finalize
    def __aiter__(self) -> MessageConnection:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._channel.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def _deadline(self, timeout: float | None, what: str) -> AbstractContextManager[None]:
        return _deadline(timeout if timeout is not None else self.call_timeout, what, self.peer)


@contextmanager
def _deadline(timeout: float | None, what: str, peer: Address | str) -> Iterator[None]:
    """``fail_after`` raising VirtrioTimeoutError naming what was waited for (None: no limit)."""
    if timeout is None:
        yield
        return
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        raise VirtrioTimeoutError(f"{what} on {peer}: nothing in {timeout:g} s") from None


@asynccontextmanager
async def _open_connection(
    stream: trio.abc.HalfCloseableStream,
    transport: Transport,
    middleware: Sequence[Middleware],
    *,
    client: bool,
    peer: Address,
    max_message_size: int,
    handshake_timeout: float,
    call_timeout: float | None,
) -> AsyncIterator[MessageConnection]:
    """The transport over ``stream``, the middleware layers over the transport, as one
    connection. Layer 0 is the nearest to the application; each may add ``overhead`` bytes,
    so the limit below a layer is the application's plus what the layers above it add."""
    overheads = [layer.overhead for layer in middleware]
    async with transport.open_channel(
        stream,
        client=client,
        max_message_size=max_message_size + sum(overheads),
        handshake_timeout=handshake_timeout,
    ) as channel:
        top = channel
        with _deadline(handshake_timeout, "the middleware handshake", peer):
            for index in reversed(range(len(middleware))):
                top = await middleware[index].wrap(
                    top, client=client, max_message_size=max_message_size + sum(overheads[:index])
                )

        async def ping(timeout: float) -> float:
            return await transport.ping(channel, timeout=timeout)

        async def wait_closed() -> None:
            await transport.wait_closed(channel)

        try:
            yield MessageConnection(
                top,
                peer=peer,
                transport=transport.name,
                call_timeout=call_timeout,
                ping=ping if transport.can_ping else None,
                wait_closed=wait_closed,
            )
        finally:
            if top is not channel:  # the layers' own resources; the transport closes the rest
                with trio.CancelScope() as forcefully:
                    forcefully.cancel()
                    await top.aclose()


ConfigT = TypeVar("ConfigT", ClientConfig, ServerConfig)


class _Endpoint(Generic[ConfigT]):
    """What a client and a server share: their config, transport and middleware, and the two
    ways to build one per transport."""

    _default_config: ClassVar[Callable[[], Any]]

    def __init__(
        self,
        config: ConfigT,
        transport: Transport,
        *,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.config: ConfigT = config
        self.transport = transport
        #: The layers every message passes through, the first nearest the application
        #: (``[Compression(), Encryption(key)]`` compresses, then encrypts). Both ends must
        #: use the same ones in the same order.
        self.middleware = tuple(middleware)

    @classmethod
    def with_xtransport(
        cls,
        config: ConfigT | None = None,
        xtransfer: XtransferConfig | None = None,
        *,
        middleware: Sequence[Middleware] = (),
    ) -> Self:
        """An endpoint speaking xtransport."""
        return cls(
            config or cls._default_config(), with_xtransport(xtransfer), middleware=middleware
        )

    @classmethod
    def with_yamux(
        cls, config: ConfigT | None = None, *, middleware: Sequence[Middleware] = ()
    ) -> Self:
        """An endpoint speaking yamux (virga's framing)."""
        return cls(config or cls._default_config(), with_yamux(), middleware=middleware)


class MessageClient(_Endpoint[ClientConfig]):
    """A client of one :class:`MessageServer` (virga's ``VirgeClient``)::

    client = MessageClient.with_xtransport(ClientConfig.vsock(103, 1234))
    async with client.connect() as connection:
        await connection.send(b"ping")
        reply = await connection.receive()
    """

    _default_config = ClientConfig

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[MessageConnection]:
        """Connect (within ``connect_timeout``) and yield the connection; disconnects on exit.

        Raises:
            ConnectError: the server could not be reached in time.
        """
        config = self.config
        stream = await open_stream(config.address, connect_timeout=config.connect_timeout)
        async with _open_connection(
            stream,
            self.transport,
            self.middleware,
            client=True,
            peer=config.address,
            max_message_size=config.max_message_size,
            handshake_timeout=config.connect_timeout,
            call_timeout=config.call_timeout,
        ) as connection:
            yield connection


ConnectionHandler = Callable[[MessageConnection], Awaitable[object]]


class MessageServer(_Endpoint[ServerConfig]):
    """Serves clients, each connection in its own task (virga's ``VirgeServer``)::

    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:1234"))

    async def echo(connection: MessageConnection) -> None:
        async for message in connection:
            await connection.send(message)

    addresses = await nursery.start(server.serve, echo)
    """

    _default_config = ServerConfig

    def __init__(
        self,
        config: ServerConfig,
        transport: Transport,
        *,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        super().__init__(config, transport, middleware=middleware)
        self._server: StreamServer[trio.SocketStream] | None = None

    async def serve(
        self,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and run ``handler(connection)`` per client, at most ``max_connections`` at
        once (a client beyond them is accepted and closed at once: the protocol has no way to
        say why; it is counted in :meth:`statistics`); ``task_status.started`` gets the bound
        addresses. Runs until cancelled.

        A connection whose client misbehaves or vanishes, or whose handler fails, is logged
        and closed; the others and the server carry on.

        Raises:
            ConnectError: the address cannot be listened on.
        """
        config = self.config

        async def one(stream: trio.SocketStream) -> None:
            async with _open_connection(
                stream,
                self.transport,
                self.middleware,
                client=False,
                peer=_peer_address(stream, config.address),
                max_message_size=config.max_message_size,
                handshake_timeout=config.handshake_timeout,
                call_timeout=config.call_timeout,
            ) as connection:
                await handler(connection)

        self._server = StreamServer(
            one, max_connections=config.max_connections, name=f"message server on {config.address}"
        )
        await self._server.serve(config.address, task_status=task_status)

    def statistics(self) -> ServerStatistics:
        """The counters of the serving (connections now, accepted, refused over the limit,
        failed); all zero before :meth:`serve`."""
        if self._server is None:
            return ServerStatistics(0, 0, 0, 0, 0)
        return self._server.statistics()


def _peer_address(stream: trio.SocketStream, listening: Address) -> Address:
    try:
        name = stream.socket.getpeername()
    except OSError:
        return listening
    if listening.scheme == "tcp":
        return Address.tcp(name[0], name[1])
    if listening.scheme == "vsock":
        return Address.vsock(name[0], name[1])
    return listening
