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

if TYPE_CHECKING:
    from virtrio.channels.xtransfer import XtransferConfig

__all__ = ["MessageChannel", "Transport", "XtransportTransport"]


class MessageChannel(Protocol):
    """What a transport yields: a ``trio.abc.Channel[bytes]`` that knows if it is usable."""

    @property
    def is_active(self) -> bool: ...

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
