"""Virga's application layer on Trio: :class:`MessageClient`, :class:`MessageServer` and the
:class:`MessageConnection` both hand out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import trio

from virtrio.channels._addresses import Address, open_stream
from virtrio.channels._serving import serve_streams
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError

from ._config import ClientConfig, ServerConfig
from ._transports import MessageChannel, Transport, XtransportTransport, YamuxTransport

if TYPE_CHECKING:  # xtransfer is imported only when used
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
        self, channel: MessageChannel, *, peer: Address, transport: str, io_timeout: float | None
    ) -> None:
        self._channel = channel
        #: The address of the other end (the server's, on a client).
        self.peer = peer
        #: ``"xtransport"`` or ``"yamux"``.
        self.transport = transport
        self.io_timeout = io_timeout

    @property
    def is_active(self) -> bool:
        """True while messages can flow both ways (virga's ``is_active``)."""
        return self._channel.is_active

    async def send(self, message: bytes, *, timeout: float | None = None) -> None:
        """Send one message.

        Raises:
            ConnectionLostError: the connection failed or was closed.
            ProtocolError: the peer broke the transport's protocol earlier.
            VirtrioTimeoutError: ``timeout`` (default ``io_timeout``) seconds passed.
        """
        with self._deadline(timeout, "sending a message"):
            await self._channel.send(message)

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message (virga's ``recv``).

        Raises:
            ConnectionLostError: the peer disconnected, or the connection failed.
            ProtocolError: the peer broke the transport's protocol.
            VirtrioTimeoutError: ``timeout`` (default ``io_timeout``) seconds passed.
        """
        with self._deadline(timeout, "waiting for a message"):
            try:
                return await self._channel.receive()
            except trio.EndOfChannel:
                raise ConnectionLostError(
                    f"{self.peer} disconnected", address=str(self.peer)
                ) from None

    async def disconnect(self) -> None:
        """Close the connection; the peer's receive ends."""
        await self._channel.aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self._channel.receive()
            except trio.EndOfChannel:
                return

    def _deadline(self, timeout: float | None, what: str) -> AbstractContextManager[None]:
        return _deadline(timeout if timeout is not None else self.io_timeout, what, self.peer)


@contextmanager
def _deadline(timeout: float | None, what: str, peer: Address) -> Iterator[None]:
    """``fail_after`` raising VirtrioTimeoutError naming what was waited for (None: no limit)."""
    if timeout is None:
        yield
        return
    try:
        with trio.fail_after(timeout):
            yield
    except trio.TooSlowError:
        raise VirtrioTimeoutError(f"{what} on {peer}: nothing in {timeout:g} s") from None


class MessageClient:
    """A client of one :class:`MessageServer` (virga's ``VirgeClient``)::

    client = MessageClient.with_xtransport(ClientConfig.vsock(103, 1234))
    async with client.connect() as connection:
        await connection.send(b"ping")
        reply = await connection.receive()
    """

    def __init__(self, config: ClientConfig, transport: Transport) -> None:
        self.config = config
        self.transport = transport

    @classmethod
    def with_xtransport(
        cls, config: ClientConfig | None = None, xtransfer: XtransferConfig | None = None
    ) -> MessageClient:
        """A client speaking xtransport."""
        return cls(config or ClientConfig(), with_xtransport(xtransfer))

    @classmethod
    def with_yamux(cls, config: ClientConfig | None = None) -> MessageClient:
        """A client speaking yamux (virga's framing)."""
        return cls(config or ClientConfig(), with_yamux())

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[MessageConnection]:
        """Connect (within ``connect_timeout``) and yield the connection; disconnects on exit.

        Raises:
            ConnectError: the server could not be reached in time.
        """
        config = self.config
        stream = await open_stream(config.address, timeout=config.connect_timeout)
        async with self.transport.open_channel(
            stream,
            client=True,
            max_message_size=config.max_message_size,
            handshake_timeout=config.connect_timeout,
        ) as channel:
            yield MessageConnection(
                channel,
                peer=config.address,
                transport=self.transport.name,
                io_timeout=config.io_timeout,
            )


ConnectionHandler = Callable[[MessageConnection], Awaitable[object]]


class MessageServer:
    """Serves clients, each connection in its own task (virga's ``VirgeServer``)::

    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:1234"))

    async def echo(connection: MessageConnection) -> None:
        async for message in connection:
            await connection.send(message)

    addresses = await nursery.start(server.serve, echo)
    """

    def __init__(self, config: ServerConfig, transport: Transport) -> None:
        self.config = config
        self.transport = transport

    @classmethod
    def with_xtransport(
        cls, config: ServerConfig | None = None, xtransfer: XtransferConfig | None = None
    ) -> MessageServer:
        """A server speaking xtransport."""
        return cls(config or ServerConfig(), with_xtransport(xtransfer))

    @classmethod
    def with_yamux(cls, config: ServerConfig | None = None) -> MessageServer:
        """A server speaking yamux (virga's framing)."""
        return cls(config or ServerConfig(), with_yamux())

    async def serve(
        self,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and run ``handler(connection)`` per client, at most ``max_connections`` at
        once; ``task_status.started`` gets the bound addresses. Runs until cancelled.

        A connection whose client misbehaves or vanishes is logged and closed; the others and
        the server carry on.

        Raises:
            ConnectError: the address cannot be listened on.
        """
        config = self.config

        async def one(stream: trio.SocketStream) -> None:
            peer = _peer_address(stream, config.address)
            async with self.transport.open_channel(
                stream,
                client=False,
                max_message_size=config.max_message_size,
                handshake_timeout=config.handshake_timeout,
            ) as channel:
                await handler(
                    MessageConnection(
                        channel,
                        peer=peer,
                        transport=self.transport.name,
                        io_timeout=config.io_timeout,
                    )
                )

        await serve_streams(
            config.address,
            one,
            max_connections=config.max_connections,
            task_status=task_status,
        )


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
