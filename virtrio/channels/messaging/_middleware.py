"""Middleware between the application and the transport (feature V6): every message passes
through each layer both ways. Both ends must use the same layers in the same order.

Three layers: :class:`Compression` (zstd or zlib, bounded on the way in), :class:`Encryption`
(ChaCha20-Poly1305 with a pre-shared key) and :class:`RateLimit` (token buckets on what this end
sends). Each keeps its logic in a sans-I/O core (:class:`MessageCompressor`,
:class:`MessageCipher`, :class:`TokenBucket`: bytes in, bytes out, time passed in) under a thin
Trio channel that :meth:`Middleware.wrap` returns::

    server = MessageServer.with_yamux(config, middleware=[Compression(), Encryption(key)])
"""

from __future__ import annotations

import abc
import math
import os
import zlib
from typing import TYPE_CHECKING, Any

import attrs
import trio

from virtrio.errors import ConfigError, ConnectionLostError, LocalProtocolError, ProtocolError

from ._errors import MessagingError
from ._transports import MessageChannel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

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


class _LayerChannel(trio.abc.Channel[bytes]):
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


# --- compression ------------------------------------------------------------------------------

_STORED = 0
_ZLIB = 1
_ZSTD = 2
#: The algorithms :class:`Compression` offers, with their default and allowed levels.
_ALGORITHMS: dict[str, tuple[int, range]] = {"zstd": (3, range(-7, 23)), "zlib": (6, range(10))}


def _algorithm(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in _ALGORITHMS:
        raise ConfigError(f"{attribute.name} must be 'zstd' or 'zlib', got {value!r}")


def _level(instance: Any, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    levels = _ALGORITHMS[instance.algorithm][1]
    if isinstance(value, bool) or not isinstance(value, int) or value not in levels:
        raise ConfigError(
            f"{attribute.name} must be a {instance.algorithm} level in"
            f" {levels.start}..{levels.stop - 1}, got {value!r}"
        )


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{attribute.name} must be a non-negative integer, got {value!r}")


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError as exc:
        raise ConfigError(
            "zstd compression needs the zstandard package: pip install 'virtrio[compression]'"
            " (or use Compression(algorithm='zlib'))"
        ) from exc
    return zstandard


@attrs.frozen
class MessageCompressor:
    """The sans-I/O core of :class:`Compression`: one flag byte, then the message as is
    (``0``), as a zlib stream (``1``) or as one zstd frame with its size (``2``). A message
    shorter than ``min_size``, or that compressing would not shrink, is stored. Decoding reads
    the flag, so it takes either algorithm whichever this end sends with.

    >>> compressor = MessageCompressor()
    >>> compressor.encode(b"hi")
    b'\\x00hi'
    >>> compressor.decode(compressor.encode(bytes(1000)), max_size=1000) == bytes(1000)
    True
    """

    #: ``"zstd"`` (the default: several times faster than zlib at a better ratio) or
    #: ``"zlib"`` (the standard library's, where zstandard is not installed).
    algorithm: str = attrs.field(default="zstd", validator=_algorithm)
    #: The algorithm's level (zstd -7..22, default 3; zlib 0..9, default 6).
    level: int | None = attrs.field(default=None, validator=_level)
    #: Messages shorter than this are never compressed.
    min_size: int = attrs.field(default=256, validator=_non_negative_int)
    _zstd: Any = attrs.field(init=False, default=None, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.algorithm == "zstd":
            object.__setattr__(self, "_zstd", _zstandard())

    def encode(self, message: bytes) -> bytes:
        """``message`` with its flag byte, compressed if that makes it smaller."""
        if len(message) >= self.min_size:
            level = self.level if self.level is not None else _ALGORITHMS[self.algorithm][0]
            if self._zstd is not None:
                packed: bytes = self._zstd.ZstdCompressor(level=level).compress(message)
                flag = _ZSTD
            else:
                packed = zlib.compress(message, level)
                flag = _ZLIB
            if len(packed) < len(message):
                return bytes((flag,)) + packed
        return bytes((_STORED,)) + message

    def decode(self, data: bytes, max_size: int) -> bytes:
        """The message ``data`` carries, at most ``max_size`` bytes.

        The decompressed size is bounded before or while decompressing, so a small message
        that would expand to gigabytes (a zip bomb) costs at most ``max_size`` bytes of memory.

        Raises:
            MiddlewareError: no flag, an unknown flag, corrupt or truncated data, bytes after
                a zlib stream, a zstd frame that does not give its size, a message over
                ``max_size``, or a zstd message where zstandard is not installed.
        """
        if not data:
            raise MiddlewareError("compressed message is empty (no flag byte)")
        flag, payload = data[0], memoryview(data)[1:]
        if flag == _STORED:
            if len(payload) > max_size:
                raise MiddlewareError(
                    f"stored message is {len(payload)} bytes; the limit is {max_size}"
                )
            return bytes(payload)
        if flag == _ZLIB:
            return _inflate(payload, max_size)
        if flag == _ZSTD:
            return _unzstd(payload, max_size)
        raise MiddlewareError(f"compressed message has unknown flag {flag}")


def _inflate(payload: memoryview, max_size: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        # max_length 0 would mean unbounded; max_size + 1 is at least 1 and tells "over"
        # apart from "exactly at the limit"
        message = inflater.decompress(payload, max_size + 1)
    except zlib.error as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    if len(message) > max_size or inflater.unconsumed_tail:
        raise MiddlewareError(f"compressed message decompresses to more than {max_size} bytes")
    if not inflater.eof:
        raise MiddlewareError("compressed message ends inside its zlib stream")
    if inflater.unused_data:
        raise MiddlewareError(
            f"compressed message has {len(inflater.unused_data)} bytes after its zlib stream"
        )
    return message


def _unzstd(payload: memoryview, max_size: int) -> bytes:
    try:
        zstandard = _zstandard()
    except ConfigError as exc:
        raise MiddlewareError(f"the peer sent a zstd message: {exc}") from None
    try:
        size = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    if size < 0:  # every frame we write says its size: decoding is then bounded by it
        raise MiddlewareError("compressed message is a zstd frame that does not give its size")
    if size > max_size:
        raise MiddlewareError(f"compressed message decompresses to more than {max_size} bytes")
    try:
        # one shot into a buffer of the size the frame gives: it cannot write past it
        message = zstandard.ZstdDecompressor().decompress(payload)
    except zstandard.ZstdError as exc:
        raise MiddlewareError(f"compressed message is corrupt: {exc}") from None
    return bytes(message)


@attrs.frozen
class Compression(Middleware):
    """Compression of each message (``overhead`` 1: the flag byte): zstd by default (the
    ``compression`` extra), or zlib from the standard library.

    Compressing runs in the sending task: zstd takes well under 0.1 ms per 64 KiB, zlib up to
    1 ms. The receiver decodes either algorithm and never expands past its
    ``max_message_size``.
    """

    #: ``"zstd"`` or ``"zlib"``.
    algorithm: str = attrs.field(default="zstd", validator=_algorithm)
    #: The algorithm's level (zstd -7..22, default 3; zlib 0..9, default 6).
    level: int | None = attrs.field(default=None, validator=_level)
    #: Messages shorter than this are sent as they are.
    min_size: int = attrs.field(default=256, validator=_non_negative_int)
    overhead = 1

    def __attrs_post_init__(self) -> None:
        if self.algorithm == "zstd":
            _zstandard()  # a missing extra is a ConfigError now, not at the first message

    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """``channel`` with each message compressed on send and decompressed on receive."""
        return _CompressedChannel(
            channel, MessageCompressor(self.algorithm, self.level, self.min_size), max_message_size
        )


class _CompressedChannel(_LayerChannel):
    def __init__(
        self, inner: MessageChannel, compressor: MessageCompressor, max_message_size: int
    ) -> None:
        super().__init__(inner)
        self._compressor = compressor
        self._max_message_size = max_message_size

    def _encode(self, message: bytes) -> bytes:
        return self._compressor.encode(message)

    def _decode(self, data: bytes) -> bytes:
        return self._compressor.decode(data, self._max_message_size)


# --- encryption -------------------------------------------------------------------------------

#: The first bytes of each side's handshake message.
HELLO_MAGIC = b"VTRE"
#: The handshake version this module speaks.
HELLO_VERSION = 1
_RANDOM_SIZE = 32
#: Length of a handshake message: magic, version, 32 random bytes.
HELLO_SIZE = len(HELLO_MAGIC) + 1 + _RANDOM_SIZE
#: Length of the pre-shared key.
KEY_SIZE = 32
#: Bytes the Poly1305 tag adds to each message.
TAG_SIZE = 16
_CLIENT_TO_SERVER = b"virtrio messaging v1 client->server"
_SERVER_TO_CLIENT = b"virtrio messaging v1 server->client"
_AUTH_FAILED = "message failed authentication (tampered, replayed, reordered or wrong key)"


def _aead_class() -> type[ChaCha20Poly1305]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError as exc:
        raise ConfigError(
            "Encryption needs the cryptography package: pip install 'virtrio[encryption]'"
        ) from exc
    return ChaCha20Poly1305


def _derive_key(psk: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(psk)


def _nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


def _check_key(name: str, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise ConfigError(f"{name} must be {KEY_SIZE} bytes, got {got}")


def _key(instance: object, attribute: attrs.Attribute[Any], value: bytes) -> None:
    _check_key(attribute.name, value)


class MessageCipher:
    """The sans-I/O core of :class:`Encryption`: one side of a connection.

    Send :meth:`hello`, pass the peer's hello to :meth:`start`, then :meth:`seal` what you
    send and :meth:`open` what you receive. Each direction has its own key, derived with
    HKDF-SHA256 from the pre-shared ``key`` and both sides' random bytes, and its own message
    counter, which is the ChaCha20-Poly1305 nonce (never sent). So a message that is altered,
    replayed, reordered or after a dropped one fails :meth:`open`; and since every connection
    draws fresh randoms, the same ``key`` on many connections never reuses a key and nonce.

    After one failed :meth:`open` every later one fails too: the receiving direction is no
    longer trusted.
    """

    def __init__(self, key: bytes, *, client: bool) -> None:
        _check_key("key", key)
        self._aead = _aead_class()
        self._psk = key
        self.client = client
        self._random = os.urandom(_RANDOM_SIZE)
        self._sealer: ChaCha20Poly1305 | None = None
        self._opener: ChaCha20Poly1305 | None = None
        self._sent = 0
        self._received = 0
        self._failed = False

    def hello(self) -> bytes:
        """This side's handshake message (the same on every call)."""
        return HELLO_MAGIC + bytes((HELLO_VERSION,)) + self._random

    def start(self, peer_hello: bytes) -> None:
        """Derive the keys from the peer's handshake message.

        Raises:
            MiddlewareError: ``peer_hello`` is not a version-1 hello, or is our own.
            LocalProtocolError: already started.
        """
        if self._sealer is not None:
            raise LocalProtocolError("the encryption handshake is already done")
        if len(peer_hello) != HELLO_SIZE or not peer_hello.startswith(HELLO_MAGIC):
            raise MiddlewareError(
                f"the peer's encryption handshake is not a virtrio hello"
                f" ({len(peer_hello)} bytes, starting {bytes(peer_hello[:4])!r})"
            )
        version = peer_hello[len(HELLO_MAGIC)]
        if version != HELLO_VERSION:
            raise MiddlewareError(
                f"the peer speaks encryption handshake version {version}; this side speaks"
                f" {HELLO_VERSION}"
            )
        peer_random = bytes(peer_hello[len(HELLO_MAGIC) + 1 :])
        if peer_random == self._random:
            raise MiddlewareError("the peer's encryption handshake is our own, sent back")
        client_random, server_random = (
            (self._random, peer_random) if self.client else (peer_random, self._random)
        )
        salt = client_random + server_random
        to_server = self._aead(_derive_key(self._psk, salt, _CLIENT_TO_SERVER))
        to_client = self._aead(_derive_key(self._psk, salt, _SERVER_TO_CLIENT))
        self._sealer, self._opener = (
            (to_server, to_client) if self.client else (to_client, to_server)
        )

    def seal(self, message: bytes) -> bytes:
        """``message`` encrypted and authenticated (:data:`TAG_SIZE` bytes longer).

        Raises:
            LocalProtocolError: before :meth:`start`, or after 2**64 messages.
        """
        if self._sealer is None:
            raise LocalProtocolError("seal() before the encryption handshake")
        if self._sent >= 2**64:
            raise LocalProtocolError("2**64 messages sent: the nonce counter is exhausted")
        nonce = _nonce(self._sent)
        self._sent += 1
        return self._sealer.encrypt(nonce, message, None)

    def open(self, data: bytes) -> bytes:
        """The message ``data`` seals.

        Raises:
            MiddlewareError: it failed authentication (or an earlier message did).
            LocalProtocolError: before :meth:`start`.
        """
        from cryptography.exceptions import InvalidTag

        if self._opener is None:
            raise LocalProtocolError("open() before the encryption handshake")
        if self._failed or self._received >= 2**64:
            raise MiddlewareError(_AUTH_FAILED)
        try:
            message = self._opener.decrypt(_nonce(self._received), data, None)
        except InvalidTag:
            self._failed = True
            raise MiddlewareError(_AUTH_FAILED) from None
        self._received += 1
        return message


@attrs.frozen
class Encryption(Middleware):
    """Authenticated encryption (ChaCha20-Poly1305) with a pre-shared 32-byte ``key``.

    :meth:`wrap` first exchanges a hello with the peer (``b"VTRE"``, version 1, 32 random
    bytes each way); see :class:`MessageCipher` for the keys and nonces. A wrong key shows at
    the first message received, as a :class:`MiddlewareError`. After a message fails
    authentication the channel is inactive and every later receive raises the same error. The
    key is left out of the repr.

    Needs the ``cryptography`` package (``pip install 'virtrio[encryption]'``), imported only
    when an ``Encryption`` is made.
    """

    #: The pre-shared key, ``os.urandom(32)`` once, given to both ends.
    key: bytes = attrs.field(repr=False, validator=_key)
    overhead = TAG_SIZE

    def __attrs_post_init__(self) -> None:
        _aead_class()  # a missing cryptography package is a ConfigError now, not at connect

    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """``channel`` encrypted, after the handshake (both sides send, then receive).

        Raises:
            MiddlewareError: the peer's hello is not a virtrio version-1 hello.
            ConnectionLostError: the peer closed the channel during the handshake.
        """
        cipher = MessageCipher(self.key, client=client)
        await channel.send(cipher.hello())
        try:
            peer_hello = await channel.receive()
        except trio.EndOfChannel:
            raise ConnectionLostError(
                "the peer closed the connection during the encryption handshake"
            ) from None
        cipher.start(peer_hello)
        return _EncryptedChannel(channel, cipher, max_message_size)


class _EncryptedChannel(_LayerChannel):
    def __init__(self, inner: MessageChannel, cipher: MessageCipher, max_message_size: int) -> None:
        super().__init__(inner)
        self._cipher = cipher
        self._max_message_size = max_message_size
        # sealing takes the next nonce, so sends must reach the wire in sealing order
        self._send_lock = trio.StrictFIFOLock()
        self._send_broken = False

    @property
    def is_connected(self) -> bool:
        """True while messages can still flow both ways."""
        return not self._send_broken and super().is_connected

    async def send(self, value: bytes) -> None:
        """Send one message, encrypted.

        Raises:
            ConnectionLostError: an earlier send was interrupted after its message was sealed,
                so the peer would reject every later message.
        """
        async with self._send_lock:
            if self._send_broken:
                raise ConnectionLostError(
                    "an earlier encrypted send was interrupted; this channel cannot send any more"
                )
            data = self._cipher.seal(bytes(value))
            try:
                await self.inner.send(data)
            except BaseException:
                self._send_broken = True  # that nonce may or may not have reached the peer
                raise

    def _decode(self, data: bytes) -> bytes:
        if len(data) > self._max_message_size + TAG_SIZE:
            raise MiddlewareError(
                f"encrypted message is {len(data)} bytes; the limit is"
                f" {self._max_message_size} + {TAG_SIZE}"
            )
        return self._cipher.open(data)


# --- rate limit -------------------------------------------------------------------------------

# tokens lost to float rounding while refilling must not cost another sleep
_TOKEN_EPSILON = 1e-6


class TokenBucket:
    """A token bucket (the sans-I/O core of :class:`RateLimit`): ``rate`` tokens a second up
    to ``burst``; it starts full at the first time it is given.

    An amount over ``burst`` is not refused: it may go once the bucket is full and leaves it in
    debt (negative), so the long-run rate holds.

    >>> bucket = TokenBucket(rate=100, burst=100)
    >>> bucket.delay(100, now=0.0)
    0.0
    >>> bucket.take(100, now=0.0)
    >>> bucket.delay(50, now=0.0)
    0.5
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not 0 < rate < math.inf:
            raise ConfigError(f"rate must be a positive finite number, got {rate!r}")
        if not 0 < burst < math.inf:
            raise ConfigError(f"burst must be a positive finite number, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def tokens(self, now: float) -> float:
        """The tokens in the bucket at ``now`` (negative while in debt)."""
        self._refill(now)
        return self._tokens

    def delay(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` may be taken (``0.0``: right away)."""
        self._refill(now)
        shortfall = min(amount, self.burst) - self._tokens
        return shortfall / self.rate if shortfall > _TOKEN_EPSILON else 0.0

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` tokens at ``now``, going into debt if there are not enough."""
        self._refill(now)
        self._tokens -= amount

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now


def _rate(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
    ):
        raise ConfigError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _burst(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{attribute.name} must be a positive number of bytes, got {value!r}")


@attrs.frozen
class RateLimit(Middleware):
    """Limits what this end sends: ``bytes_per_second`` (and optionally
    ``messages_per_second``), with one token bucket per limit and per connection.

    ``burst`` is how many bytes may go at once after an idle spell: by default one second's
    worth, at least 64 KiB; the message bucket holds one second's worth, at least one. A
    message larger than ``burst`` waits until the bucket is full, then goes. Bytes are counted
    as the message is at this layer: put it after :class:`Compression` to limit the compressed
    size. Senders are served in the order they call ``send``; a send cancelled while waiting
    takes nothing. Receiving is not limited.
    """

    bytes_per_second: float = attrs.field(validator=_rate)
    burst: int | None = attrs.field(default=None, kw_only=True, validator=_burst)
    messages_per_second: float | None = attrs.field(default=None, kw_only=True, validator=_rate)

    @property
    def byte_burst(self) -> int:
        """The byte bucket's size: ``burst``, or its default."""
        if self.burst is not None:
            return self.burst
        return max(64 * 1024, math.ceil(self.bytes_per_second))

    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """``channel`` with its sends paced."""
        buckets = [(TokenBucket(self.bytes_per_second, self.byte_burst), False)]
        if self.messages_per_second is not None:
            message_burst = max(1, math.ceil(self.messages_per_second))
            buckets.append((TokenBucket(self.messages_per_second, message_burst), True))
        return _RateLimitedChannel(channel, buckets)


class _RateLimitedChannel(_LayerChannel):
    def __init__(self, inner: MessageChannel, buckets: list[tuple[TokenBucket, bool]]) -> None:
        super().__init__(inner)
        self._buckets = buckets  # (bucket, counts messages rather than bytes)
        self._send_lock = trio.StrictFIFOLock()

    async def send(self, value: bytes) -> None:
        """Send one message once the limits allow it (or raise when the caller's deadline
        passes first)."""
        async with self._send_lock:
            while True:
                now = trio.current_time()
                wait = max(
                    bucket.delay(1 if per_message else len(value), now)
                    for bucket, per_message in self._buckets
                )
                if wait <= 0:
                    break
                await trio.sleep(wait)
            for bucket, per_message in self._buckets:
                bucket.take(1 if per_message else len(value), now)
            await self.inner.send(value)
