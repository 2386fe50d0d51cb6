"""Authenticated encryption with a pre-shared key: :class:`Encryption` and its sans-I/O core
:class:`MessageCipher`. The handshake, key schedule and nonces are specified, with test
vectors, in docs/messaging-encryption.md."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
import trio

from virtrio.errors import ConfigError, ConnectionLostError, LocalProtocolError

from .._transports import MessageChannel
from ._base import LayerChannel, Middleware, MiddlewareError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = [
    "HELLO_MAGIC",
    "HELLO_SIZE",
    "HELLO_VERSION",
    "KEY_SIZE",
    "TAG_SIZE",
    "Encryption",
    "MessageCipher",
]


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
    longer trusted. The wire format is specified in docs/messaging-encryption.md; ``random``
    (this side's 32 handshake bytes) is for its test vectors only.
    """

    def __init__(self, key: bytes, *, client: bool, random: bytes | None = None) -> None:
        _check_key("key", key)
        if random is not None and len(random) != _RANDOM_SIZE:
            raise ConfigError(f"random must be {_RANDOM_SIZE} bytes, got {len(random)}")
        self._aead = _aead_class()
        self._psk = key
        self.client = client
        # given only to reproduce the test vectors of docs/messaging-encryption.md: a random
        # used twice with the same key repeats the connection's keys and nonces
        self._random = os.urandom(_RANDOM_SIZE) if random is None else bytes(random)
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


class _EncryptedChannel(LayerChannel):
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
