"""What every middleware layer shares: :class:`Middleware`, :class:`MiddlewareError` and the
channel a layer wraps around the one below it."""

from __future__ import annotations

import abc

import trio

from virtrio.errors import ProtocolError

from .._errors import MessagingError
from .._transports import MessageChannel

__all__ = ["LayerChannel", "Middleware", "MiddlewareError"]


class MiddlewareError(MessagingError, ProtocolError):
    """A message did not pass a middleware layer (corrupt, forged, too large, bad handshake)."""


class Middleware(abc.ABC):
    """One layer between the application and the transport.

    ``middleware=[Compression(), Encryption(key)]`` on a client or server: the first layer is
    the nearest to the application, so a message is compressed, then encrypted, then sent.
    """

    #: Bytes this layer may add to a message (the transport's size limit grows by it).
    overhead: int = 0

    @abc.abstractmethod
    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """A channel that passes messages through this layer to ``channel``; closing it closes
        ``channel``. It may first exchange messages with the peer (a handshake), which the
        caller bounds with its connect or handshake timeout. ``max_message_size`` is the largest
        message this layer may hand up to the application (for what it receives)."""


class LayerChannel(trio.abc.Channel[bytes]):
    """A message channel over ``inner`` that applies a layer: subclasses override
    :meth:`_encode` and :meth:`_decode` (or :meth:`send`).

    Exceptions of ``inner`` pass through unchanged. After a :class:`MiddlewareError` on receive
    the channel is inactive and every later receive raises the same error.
    """

    def __init__(self, inner: MessageChannel) -> None:
        self.inner = inner
        self._receive_error: MiddlewareError | None = None

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways."""
        return self._receive_error is None and self.inner.is_connected

    async def send(self, value: bytes) -> None:
        """Send one message through the layer."""
        await self.inner.send(self._encode(bytes(value)))

    async def receive(self) -> bytes:
        """The next message, through the layer.

        Raises:
            MiddlewareError: the message did not pass the layer (now or on an earlier receive).
            trio.EndOfChannel: the peer closed its side after its last message.
        """
        if self._receive_error is not None:
            raise MiddlewareError(str(self._receive_error))
        data = await self.inner.receive()
        try:
            return self._decode(data)
        except MiddlewareError as exc:
            self._receive_error = exc
            raise

    async def aclose(self) -> None:
        """Close the channel underneath."""
        await self.inner.aclose()

    def _encode(self, message: bytes) -> bytes:
        return message

    def _decode(self, data: bytes) -> bytes:
        return data
