"""Virga's client and server on Trio: whole messages over vsock, TCP or Unix, carried by
xtransport or yamux (feature V3/V4).

The transport is chosen when the client or server is made; the two ends must agree::

    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:1234"))

    async def echo(connection: MessageConnection) -> None:
        async for message in connection:
            await connection.send(message)

    async with trio.open_nursery() as nursery:
        [address] = await nursery.start(server.serve, echo)
        async with MessageClient.with_xtransport(ClientConfig(address)).connect() as connection:
            await connection.send(b"ping")
            assert await connection.receive() == b"ping"

Over xtransport each message is one xtransport message (byte-exact with
kylin-x-kernel/xtransfer); over yamux the client opens one stream and each message is an 8-byte
big-endian length and the bytes, as virga frames them, so either end may be virga itself.
"""

from ._config import (
    DEFAULT_CLIENT_CID as DEFAULT_CLIENT_CID,
    DEFAULT_PORT as DEFAULT_PORT,
    ClientConfig as ClientConfig,
    ServerConfig as ServerConfig,
)
from ._endpoints import (
    MessageClient as MessageClient,
    MessageConnection as MessageConnection,
    MessageServer as MessageServer,
    with_xtransport as with_xtransport,
    with_yamux as with_yamux,
)
from ._framing import (
    LengthPrefixDecoder as LengthPrefixDecoder,
    LengthPrefixedChannel as LengthPrefixedChannel,
    LengthPrefixError as LengthPrefixError,
    encode_length_prefixed as encode_length_prefixed,
)
from ._transports import (
    MessageChannel as MessageChannel,
    Transport as Transport,
    XtransportTransport as XtransportTransport,
    YamuxTransport as YamuxTransport,
)

__all__ = [
    "DEFAULT_CLIENT_CID",
    "DEFAULT_PORT",
    "ClientConfig",
    "LengthPrefixDecoder",
    "LengthPrefixError",
    "LengthPrefixedChannel",
    "MessageChannel",
    "MessageClient",
    "MessageConnection",
    "MessageServer",
    "ServerConfig",
    "Transport",
    "XtransportTransport",
    "YamuxTransport",
    "encode_length_prefixed",
    "with_xtransport",
    "with_yamux",
]
