"""The two transports a client or server is built with: xtransport and yamux.

A transport turns one connected byte stream into a message channel, on the client or the
server side. Each is imported only when used, so a program that only uses one pulls nothing of
the other (feature V5).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, ClassVar, Protocol

import attrs
import trio

from virtrio.errors import LocalProtocolError, VirtrioTimeoutError

from ._framing import LengthPrefixedChannel

if TYPE_CHECKING:
    from virtrio.channels.xtransfer import XtransferConfig
    from virtrio.channels.yamux import MuxSession

__all__ = ["MessageChannel", "Transport", "XtransportTransport", "YamuxTransport"]


class MessageChannel(Protocol):
    """What a transport yields: a ``trio.abc.Channel[bytes]`` that knows if it is usable."""

    @property
    def is_connected(self) -> bool: ...

    async def send(self, value: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Transport(abc.ABC):
    """How messages travel on a stream; :func:`with_xtransport` and :func:`with_yamux` make one."""

    #: ``"xtransport"`` or ``"yamux"``.
    name: ClassVar[str]

    @abc.abstractmethod
    def open_channel(
        self,
        stream: trio.abc.HalfCloseableStream,
        *,
        client: bool,
        max_message_size: int,
        handshake_timeout: float,
    ) -> AbstractAsyncContextManager[MessageChannel]:
        """An async context manager running the transport over ``stream`` (which it owns);
        setting it up may take at most ``handshake_timeout`` seconds."""

    async def wait_closed(self, channel: MessageChannel) -> None:
        """Return once ``channel`` (one this transport opened) can carry nothing more: the
        connection under it ended or failed, or it was closed. A transport that cannot tell
        never returns (the default): a pool then learns of a closed connection only when it
        is next borrowed, or from its health check."""
        await trio.sleep_forever()

    #: Whether :meth:`ping` works (the transport has a ping of its own).
    can_ping: ClassVar[bool] = False

    async def ping(self, channel: MessageChannel, *, timeout: float) -> float:
        """A transport-level ping on ``channel`` (one this transport opened); returns the
        round trip in seconds.

        Raises:
            LocalProtocolError: the transport has no ping (xtransport).
            VirtrioTimeoutError: no answer within ``timeout``.
            ConnectionLostError: the connection ended.
        """
        raise LocalProtocolError(f"{self.name} has no ping: give the health check a probe")


@attrs.frozen
class XtransportTransport(Transport):
    """Messages as xtransport packets (kylin-x-kernel/xtransfer framing) on the connection."""

    #: Frame size and ack mode; ``max_message_size`` comes from the client or server config.
    config: XtransferConfig | None = None
    name: ClassVar[str] = "xtransport"

    @asynccontextmanager
    async def open_channel(
        self,
        stream: trio.abc.HalfCloseableStream,
        *,
        client: bool,
        max_message_size: int,
        handshake_timeout: float,
    ) -> AsyncIterator[MessageChannel]:
        from virtrio.channels.xtransfer import XtransferConfig, open_xtransfer

        config = self.config if self.config is not None else XtransferConfig()
        config = attrs.evolve(config, max_message_size=max_message_size)
        async with open_xtransfer(stream, config) as channel:
            yield channel

    async def wait_closed(self, channel: MessageChannel) -> None:
        """Return once the channel's reader stopped (the connection ended or failed)."""
        from virtrio.channels.xtransfer import XtransferChannel

        if not isinstance(channel, XtransferChannel):
            raise LocalProtocolError("not a channel of the xtransport transport")
        await channel.wait_closed()


@attrs.frozen
class YamuxTransport(Transport):
    """Messages the way virga sends them over yamux: the client opens one stream, the server
    takes the first inbound one, and each message is an 8-byte big-endian length and the bytes.
    """

    name: ClassVar[str] = "yamux"
    can_ping: ClassVar[bool] = True

    @asynccontextmanager
    async def open_channel(
        self,
        stream: trio.abc.HalfCloseableStream,
        *,
        client: bool,
        max_message_size: int,
        handshake_timeout: float,
    ) -> AsyncIterator[MessageChannel]:
        from virtrio.channels.yamux import open_mux  # loaded only when this transport is used

        async with open_mux(stream, client=client) as session:
            try:
                with trio.fail_after(handshake_timeout):
                    mux_stream = await (
                        session.open_stream() if client else session.accept_stream()
                    )
            except trio.TooSlowError:
                raise VirtrioTimeoutError(
                    f"no yamux stream was {'opened' if client else 'opened by the client'}"
                    f" within {handshake_timeout:g} s"
                ) from None
            channel = _YamuxChannel(session, mux_stream, max_message_size=max_message_size)
            try:
                yield channel
            finally:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(channel)

    async def ping(self, channel: MessageChannel, *, timeout: float) -> float:
        """A yamux ping on the channel's session (answered by the peer's multiplexer)."""
        if not isinstance(channel, _YamuxChannel):
            raise LocalProtocolError("not a channel of the yamux transport")
        return await channel.session.ping(timeout=timeout)

    async def wait_closed(self, channel: MessageChannel) -> None:
        """Return once the channel's yamux session ended."""
        if not isinstance(channel, _YamuxChannel):
            raise LocalProtocolError("not a channel of the yamux transport")
        await channel.session.wait_closed()


class _YamuxChannel(LengthPrefixedChannel):
    """Virga's framing on one stream, knowing the session it belongs to (for pings)."""

    def __init__(
        self, session: MuxSession, stream: trio.abc.HalfCloseableStream, *, max_message_size: int
    ) -> None:
        super().__init__(stream, max_message_size=max_message_size)
        self.session = session

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways (and the session is up: a pooled
        connection nobody reads from learns of its end this way)."""
        return super().is_connected and self.session.is_connected
