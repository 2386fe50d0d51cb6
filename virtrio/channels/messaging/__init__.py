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

The extension points (V6): ``middleware=[Compression(), Encryption(key), RateLimit(...)]`` on
a client and its server; :func:`virtrio.nurseries.messaging.connect_supervised` reconnects
with backoff and checks health (:class:`HealthCheck`); :func:`virtrio.nurseries.messaging.open_pool`
keeps a pool of connections for many borrowers. A :class:`MessageClient` connection itself is
one-shot: what keeps it alive lives in :mod:`virtrio.nurseries.messaging`.
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
from ._errors import MessagingError as MessagingError
from ._framing import (
    LengthPrefixDecoder as LengthPrefixDecoder,
    LengthPrefixedChannel as LengthPrefixedChannel,
    LengthPrefixError as LengthPrefixError,
    encode_length_prefixed as encode_length_prefixed,
)
from ._health import (
    HealthCheck as HealthCheck,
    HealthCheckError as HealthCheckError,
    Probe as Probe,
)
from ._middleware import (
    Compression as Compression,
    Encryption as Encryption,
    MessageCipher as MessageCipher,
    MessageCompressor as MessageCompressor,
    Middleware as Middleware,
    MiddlewareError as MiddlewareError,
    RateLimit as RateLimit,
    TokenBucket as TokenBucket,
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
    "Compression",
    "Encryption",
    "HealthCheck",
    "HealthCheckError",
    "LengthPrefixDecoder",
    "LengthPrefixError",
    "LengthPrefixedChannel",
    "MessageChannel",
    "MessageCipher",
    "MessageCompressor",
    "MessageClient",
    "MessageConnection",
    "MessageServer",
    "Middleware",
    "MessagingError",
    "MiddlewareError",
    "Probe",
    "RateLimit",
    "ServerConfig",
    "TokenBucket",
    "Transport",
    "XtransportTransport",
    "YamuxTransport",
    "encode_length_prefixed",
    "with_xtransport",
    "with_yamux",
]
