"""Middleware between the application and the transport (feature V6): every message passes
through each layer both ways. Both ends must use the same layers in the same order.

Three layers: :class:`Compression` (zstd or zlib, bounded on the way in), :class:`Encryption`
(ChaCha20-Poly1305 with a pre-shared key) and :class:`RateLimit` (token buckets on what this end
sends). Each keeps its logic in a sans-I/O core (:class:`MessageCompressor`,
:class:`MessageCipher`, :class:`TokenBucket`: bytes in, bytes out, time passed in) under a thin
Trio channel that :meth:`Middleware.wrap` returns::

    server = MessageServer.with_yamux(config, middleware=[Compression(), Encryption(key)])
"""

from ._base import Middleware as Middleware, MiddlewareError as MiddlewareError
from ._compression import Compression as Compression, MessageCompressor as MessageCompressor
from ._encryption import (
    HELLO_MAGIC as HELLO_MAGIC,
    HELLO_SIZE as HELLO_SIZE,
    HELLO_VERSION as HELLO_VERSION,
    KEY_SIZE as KEY_SIZE,
    TAG_SIZE as TAG_SIZE,
    Encryption as Encryption,
    MessageCipher as MessageCipher,
)
from ._ratelimit import RateLimit as RateLimit, TokenBucket as TokenBucket

__all__ = [
    "HELLO_MAGIC",
    "HELLO_SIZE",
    "HELLO_VERSION",
    "KEY_SIZE",
    "TAG_SIZE",
    "Compression",
    "Encryption",
    "MessageCipher",
    "MessageCompressor",
    "Middleware",
    "MiddlewareError",
    "RateLimit",
    "TokenBucket",
]
