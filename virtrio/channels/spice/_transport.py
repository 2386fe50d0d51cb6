"""Byte transports for a Spice channel: Unix, TCP, TLS over TCP, WebSocket (websockify-style)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from virtrio.channels._addresses import Address, open_stream, parse_address
from virtrio.errors import ConnectError

__all__ = ["SpiceTransport", "open_transport"]


@attrs.frozen
class SpiceTransport:
    """How to reach a Spice server: an address (``unix:``, ``tcp://``, ``ws://``, ``wss://``)
    and, for TLS on a ``tcp://`` TLS port, an SSL context (verification on by default; build one
    with :meth:`tls_context`)."""

    address: Address
    ssl_context: ssl.SSLContext | None = None

    @staticmethod
    def tls_context(ca_file: str | None = None, *, check_hostname: bool = True) -> ssl.SSLContext:
        """A verifying client context; ``ca_file`` replaces the system CAs."""
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.check_hostname = check_hostname
        return ctx

    @classmethod
    def parse(
        cls, address: str | Address, *, ssl_context: ssl.SSLContext | None = None
    ) -> SpiceTransport:
        """Accept also ``tls://host:port`` (TLS with the default verifying context)."""
        if isinstance(address, str) and address.startswith("tls://"):
            return cls(parse_address("tcp://" + address[6:]), ssl_context or cls.tls_context())
        return cls(parse_address(address), ssl_context)


class _WebSocketStream(trio.abc.Stream):
    """Raw bytes over binary WebSocket messages, as websockify carries them."""

    def __init__(self, ws: object) -> None:
        self._ws = ws
        self._buffer = b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        from trio_websocket import ConnectionClosed

        try:
            await self._ws.send_message(bytes(data))  # type: ignore[attr-defined]
        except ConnectionClosed as exc:
            raise trio.BrokenResourceError(str(exc)) from None

    async def wait_send_all_might_not_block(self) -> None:
        return

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        from trio_websocket import ConnectionClosed

        while not self._buffer:
            try:
                message = await self._ws.get_message()  # type: ignore[attr-defined]
            except ConnectionClosed:
                return b""
            self._buffer = message if isinstance(message, bytes) else message.encode()
        n = len(self._buffer) if max_bytes is None else max_bytes
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    async def aclose(self) -> None:
        await self._ws.aclose()  # type: ignore[attr-defined]


@asynccontextmanager
async def open_transport(
    transport: SpiceTransport, *, timeout: float
) -> AsyncIterator[trio.abc.Stream]:
    """A connected byte stream to the server, closed on exit."""
    address = transport.address
    if address.scheme in ("ws", "wss"):
        from trio_websocket import HandshakeError, open_websocket_url

        url = str(address)
        context = transport.ssl_context if address.scheme == "wss" else None
        manager = open_websocket_url(
            url,
            ssl_context=context,
            subprotocols=["binary"],
            connect_timeout=timeout,
            max_message_size=16 * 1024 * 1024,
        )
        try:
            ws = await manager.__aenter__()
        except (OSError, HandshakeError, trio.TooSlowError) as exc:
            raise ConnectError(f"cannot open WebSocket {url}: {exc}", address=url) from None
        try:
            yield _WebSocketStream(ws)
        finally:
            await manager.__aexit__(None, None, None)
        return
    stream: trio.abc.Stream = await open_stream(address, connect_timeout=timeout)
    if transport.ssl_context is not None:
        tls = trio.SSLStream(
            stream, transport.ssl_context, server_hostname=address.host, https_compatible=False
        )
        try:
            with trio.fail_after(timeout):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.TooSlowError, ssl.SSLError) as exc:
            await stream.aclose()
            cause = exc.__cause__ or exc
            raise ConnectError(
                f"TLS handshake with {address} failed: {cause}", address=str(address)
            ) from None
        stream = tls
    async with stream:
        yield stream
