"""Middleware layers (feature V6): compression, encryption, rate limit; sans-I/O cores and the
Trio channels over a real in-process pair of length-prefixed channels."""

from __future__ import annotations

import math
import random
import sys
import tracemalloc
import zlib
from collections.abc import Callable, Sequence

import pytest
import trio
import trio.testing
import zstandard
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, strategies as st

from virtrio.channels.messaging import LengthPrefixedChannel, MessageChannel
from virtrio.channels.messaging._middleware import (
    HELLO_MAGIC,
    HELLO_SIZE,
    TAG_SIZE,
    Compression,
    Encryption,
    MessageCipher,
    MessageCompressor,
    Middleware,
    MiddlewareError,
    RateLimit,
    TokenBucket,
)
from virtrio.errors import ConfigError, ConnectionLostError, LocalProtocolError, ProtocolError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MiB = 1024 * 1024
AUTH_FAILED = "message failed authentication"


class Wire(trio.abc.Channel[bytes]):
    """The transport under the layers: records what it carried, can alter or fail a send."""

    def __init__(self, inner: LengthPrefixedChannel) -> None:
        self.inner = inner
        self.sent: list[bytes] = []
        self.mutate: Callable[[bytes], bytes] | None = None
        self.fail_next: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        return self.inner.is_connected

    async def send(self, value: bytes) -> None:
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if self.mutate is not None:
            value = self.mutate(value)
        self.sent.append(value)
        await self.inner.send(value)

    async def receive(self) -> bytes:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


class Ends:
    def __init__(self, client: MessageChannel, server: MessageChannel, wires: list[Wire]):
        self.client, self.server = client, server
        self.client_wire, self.server_wire = wires


async def connect(
    layers: Sequence[Middleware],
    server_layers: Sequence[Middleware] | None = None,
    *,
    max_size: int = 2 * MiB,
    transport_slack: int = 0,
) -> Ends:
    """Both ends stacked as the endpoints stack them (layer 0 nearest to the application)."""
    stacks = [layers, layers if server_layers is None else server_layers]
    overhead = sum(layer.overhead for layer in layers)
    streams = trio.testing.memory_stream_pair()
    wires = [
        Wire(LengthPrefixedChannel(s, max_message_size=max_size + overhead + transport_slack))
        for s in streams
    ]
    tops: list[MessageChannel] = [wires[0], wires[1]]

    async def build(side: int) -> None:
        stack = stacks[side]
        top: MessageChannel = wires[side]
        for index in reversed(range(len(stack))):
            below = max_size + sum(layer.overhead for layer in stack[:index])
            top = await stack[index].wrap(top, client=side == 0, max_message_size=below)
        tops[side] = top

    async with trio.open_nursery() as nursery:
        nursery.start_soon(build, 0)
        nursery.start_soon(build, 1)
    return Ends(tops[0], tops[1], wires)


def payload(kind: str, size: int) -> bytes:
    if kind == "random":
        return random.Random(size).randbytes(size)
    return (b"virtrio repetitive data " * (size // 24 + 1))[:size]


SIZES = [0, 1, 255, 256, 10_000, MiB]
STACKS: dict[str, Callable[[], list[Middleware]]] = {
    "compression": lambda: [Compression()],
    "encryption": lambda: [Encryption(KEY)],
    "rate-limit": lambda: [RateLimit(1e12)],
    "compression+encryption": lambda: [Compression(), Encryption(KEY)],
    "all three": lambda: [Compression(), RateLimit(1e12), Encryption(KEY)],
}


# --- the interface ----------------------------------------------------------------------------


def test_layers_are_middleware_with_their_overhead() -> None:
    layers = [Compression(), Encryption(KEY), RateLimit(1000)]
    assert all(isinstance(layer, Middleware) for layer in layers)
    assert [layer.overhead for layer in layers] == [1, 16, 0]
    assert issubclass(MiddlewareError, ProtocolError)


def test_key_is_not_in_the_repr() -> None:
    assert KEY.hex() not in repr(Encryption(KEY))
    assert repr(KEY) not in repr(Encryption(KEY))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Compression(algorithm="zlib", level=10), "level"),
        (lambda: Compression(algorithm="zlib", level=-1), "level"),
        (lambda: Compression(level=23), "level"),
        (lambda: Compression(level=-8), "level"),
        (lambda: Compression(level=True), "level"),
        (lambda: Compression(algorithm="lz4"), "algorithm"),
        (lambda: Compression(min_size=-1), "min_size"),
        (lambda: MessageCompressor(algorithm="zlib", level=12), "level"),
        (lambda: Encryption(b"short"), "key"),
        (lambda: Encryption(bytes(33)), "key"),
        (lambda: Encryption("k" * 32), "key"),  # type: ignore[arg-type]
        (lambda: MessageCipher(bytes(31), client=True), "key"),
        (lambda: RateLimit(-1), "bytes_per_second"),
        (lambda: RateLimit(0), "bytes_per_second"),
        (lambda: RateLimit(math.nan), "bytes_per_second"),
        (lambda: RateLimit(math.inf), "bytes_per_second"),
        (lambda: RateLimit(1000, burst=0), "burst"),
        (lambda: RateLimit(1000, messages_per_second=-2), "messages_per_second"),
        (lambda: TokenBucket(-1, 10), "rate"),
        (lambda: TokenBucket(1, 0), "burst"),
    ],
)
def test_config_errors_name_the_field(make: Callable[[], object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} must"):
        make()


def test_encryption_without_cryptography_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigError, match=r"pip install 'virtrio\[encryption\]'"):
        Encryption(KEY)
    with pytest.raises(ConfigError, match=r"pip install 'virtrio\[encryption\]'"):
        MessageCipher(KEY, client=True)


# --- round trips through the channels ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["random", "repetitive"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("stack", list(STACKS))
async def test_round_trip_both_ways(stack: str, size: int, kind: str) -> None:
    ends = await connect(STACKS[stack]())
    message = payload(kind, size)
    await ends.client.send(message)
    assert await ends.server.receive() == message
    await ends.server.send(message[::-1])
    assert await ends.client.receive() == message[::-1]
    assert ends.client.is_connected
    assert ends.server.is_connected


async def test_many_messages_stacked_keep_order() -> None:
    ends = await connect(STACKS["all three"]())
    messages = [payload("repetitive" if i % 2 else "random", i * 37) for i in range(60)]
    for message in messages:
        await ends.client.send(message)
        await ends.server.send(message)
    assert [await ends.server.receive() for _ in messages] == messages
    assert [await ends.client.receive() for _ in messages] == messages


@pytest.mark.parametrize(("algorithm", "flag"), [("zstd", 2), ("zlib", 1)])
@pytest.mark.parametrize("size", SIZES)
async def test_compression_on_the_wire(size: int, algorithm: str, flag: int) -> None:
    ends = await connect([Compression(algorithm)])
    compressible, incompressible = payload("repetitive", size), payload("random", size)
    await ends.client.send(compressible)
    await ends.client.send(incompressible)
    deflated, stored = ends.client_wire.sent
    if size >= 256:
        assert deflated[0] == flag
        assert len(deflated) < size // 4
    else:  # under min_size
        assert deflated == b"\x00" + compressible
    assert stored == b"\x00" + incompressible  # 1 byte of overhead
    assert await ends.server.receive() == compressible
    assert await ends.server.receive() == incompressible


@pytest.mark.parametrize("size", [0, 1, 10_000])
async def test_encryption_on_the_wire(size: int) -> None:
    ends = await connect([Encryption(KEY)])
    [client_hello] = ends.client_wire.sent
    [server_hello] = ends.server_wire.sent
    assert len(client_hello) == len(server_hello) == HELLO_SIZE
    assert client_hello[:5] == server_hello[:5] == b"VTRE\x01"
    assert client_hello != server_hello
    message = payload("repetitive", size)
    await ends.client.send(message)
    sealed = ends.client_wire.sent[-1]
    assert len(sealed) == size + TAG_SIZE
    # a byte or two of plaintext may turn up in random ciphertext by chance; 16 may not
    assert size < 16 or message[:64] not in sealed
    await ends.client.send(message)
    assert ends.client_wire.sent[-1] != sealed  # a fresh nonce: the same message seals anew
    assert await ends.server.receive() == message
    assert await ends.server.receive() == message


async def test_compressed_then_encrypted_shrinks_on_the_wire() -> None:
    ends = await connect([Compression(), Encryption(KEY)])
    message = payload("repetitive", 10_000)
    await ends.client.send(message)
    sealed = ends.client_wire.sent[-1]
    assert len(sealed) == len(MessageCompressor().encode(message)) + TAG_SIZE
    assert len(sealed) < 1000
    assert await ends.server.receive() == message


async def test_inner_errors_and_close_pass_through() -> None:
    ends = await connect([Compression(), Encryption(KEY)])
    await ends.client.send(b"last")
    await ends.client_wire.inner.send_eof()
    assert await ends.server.receive() == b"last"
    with pytest.raises(trio.EndOfChannel):
        await ends.server.receive()
    assert not ends.server.is_connected  # the inner channel saw the end
    failure = ConnectionLostError("the stream broke")
    ends.server_wire.fail_next = failure
    with pytest.raises(ConnectionLostError) as caught:
        await ends.server.send(b"x")
    assert caught.value is failure
    await ends.client.aclose()
    assert not ends.client_wire.inner.is_connected


async def test_compression_error_makes_the_channel_unusable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ends = await connect([Compression()])
    await ends.client_wire.send(b"\x07junk")
    with pytest.raises(MiddlewareError, match="unknown flag 7"):
        await ends.server.receive()
    assert not ends.server.is_connected
    with trio.fail_after(10), pytest.raises(MiddlewareError, match="unknown flag 7"):
        await ends.server.receive()  # at once, without waiting for another message


async def test_zip_bomb_through_the_channel() -> None:
    ends = await connect([Compression()], max_size=MiB)
    await ends.client_wire.send(zip_bomb())
    with pytest.raises(MiddlewareError, match=f"decompresses to more than {MiB} bytes"):
        await ends.server.receive()
    assert not ends.server.is_connected


# --- the compressor ---------------------------------------------------------------------------

repetitive = st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(0, 600))


@given(
    st.binary(max_size=3000) | repetitive,
    st.sampled_from(["zstd", "zlib"]),
    st.data(),
    st.integers(0, 400),
)
def test_compressor_round_trip(
    message: bytes, algorithm: str, draw: st.DataObject, min_size: int
) -> None:
    levels = st.integers(-7, 22) if algorithm == "zstd" else st.integers(0, 9)
    compressor = MessageCompressor(algorithm, draw.draw(levels | st.none()), min_size)
    encoded = compressor.encode(message)
    assert len(encoded) <= len(message) + 1
    assert encoded[0] == (0 if len(message) < min_size else encoded[0])
    assert compressor.decode(encoded, max_size=len(message)) == message


def test_compressor_wire_format() -> None:
    compressor = MessageCompressor("zlib")
    assert compressor.encode(b"") == b"\x00"
    assert compressor.encode(bytes(255)) == b"\x00" + bytes(255)
    assert compressor.encode(bytes(256)) == b"\x01" + zlib.compress(bytes(256), 6)
    nine = MessageCompressor("zlib", level=9)
    assert nine.encode(bytes(256)) == b"\x01" + zlib.compress(bytes(256), 9)
    # zstd: one frame that gives its size (what bounds decoding), flag 2
    packed = MessageCompressor().encode(bytes(256))
    assert packed[0] == 2
    assert zstandard.frame_content_size(packed[1:]) == 256
    assert zstandard.ZstdDecompressor().decompress(packed[1:]) == bytes(256)
    # either end decodes both, whatever it sends with
    assert MessageCompressor("zlib").decode(packed, max_size=256) == bytes(256)
    assert MessageCompressor().decode(nine.encode(bytes(256)), max_size=256) == bytes(256)


ZSTD_HELLO = zstandard.ZstdCompressor().compress(b"hello" * 100)
valid_deflated = st.binary(max_size=200).map(lambda b: b"\x01" + zlib.compress(b * 3))
valid_zstd = st.binary(max_size=200).map(
    lambda b: b"\x02" + zstandard.ZstdCompressor().compress(b * 3)
)


@given(st.binary(max_size=200) | valid_deflated | valid_zstd, st.data())
def test_compressor_garbage_is_an_error_or_a_message(data: bytes, draw: st.DataObject) -> None:
    if data and draw.draw(st.booleans()):  # flip a byte of something near-valid
        index = draw.draw(st.integers(0, len(data) - 1))
        data = (
            data[:index]
            + bytes((data[index] ^ draw.draw(st.integers(1, 255)),))
            + data[index + 1 :]
        )
    try:
        message = MessageCompressor().decode(data, max_size=300)
    except MiddlewareError:
        return
    assert len(message) <= 300


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", "empty"),
        (b"\x03abc", "unknown flag 3"),
        (b"\xffabc", "unknown flag 255"),
        (b"\x01not zlib at all", "corrupt"),
        (b"\x01" + zlib.compress(b"hello" * 100)[:-6], "ends inside its zlib stream"),
        (b"\x01" + zlib.compress(b"hello" * 100) + b"tail", "4 bytes after its zlib stream"),
        (b"\x00" + bytes(1001), "stored message is 1001 bytes; the limit is 1000"),
        (b"\x02not zstd at all", "corrupt"),
        (b"\x02" + ZSTD_HELLO[:-4], "corrupt"),
        (b"\x02" + ZSTD_HELLO[:4] + b"\x08" + bytes(8), "corrupt"),  # a reserved bit set
        (
            b"\x02" + zstandard.ZstdCompressor(write_content_size=False).compress(b"hello" * 100),
            "does not give its size",
        ),
        (b"\x02" + zstandard.ZstdCompressor().compress(bytes(1001)), "more than 1000 bytes"),
    ],
    ids=[
        "empty",
        "flag-3",
        "flag-255",
        "corrupt",
        "truncated",
        "trailing",
        "stored-oversize",
        "zstd-corrupt",
        "zstd-truncated",
        "zstd-bad-header",
        "zstd-no-size",
        "zstd-oversize",
    ],
)
def test_compressor_errors_are_clear(data: bytes, error: str) -> None:
    with pytest.raises(MiddlewareError, match=error):
        MessageCompressor().decode(data, max_size=1000)


@pytest.mark.parametrize(("algorithm", "flag"), [("zstd", 2), ("zlib", 1)])
def test_compressor_limit_is_exact(algorithm: str, flag: int) -> None:
    compressor = MessageCompressor(algorithm, min_size=0)
    at_limit = compressor.encode(bytes(1000))
    assert at_limit[0] == flag
    assert compressor.decode(at_limit, max_size=1000) == bytes(1000)
    with pytest.raises(MiddlewareError, match="more than 999 bytes"):
        compressor.decode(at_limit, max_size=999)
    assert compressor.decode(compressor.encode(b""), max_size=0) == b""


_BOMB: list[bytes] = []


def zip_bomb() -> bytes:
    """A ~100 KB message that inflates to 100 MiB of zeros, built without holding 100 MiB."""
    if not _BOMB:
        deflater = zlib.compressobj(9)
        chunk = bytes(MiB)
        body = b"".join(deflater.compress(chunk) for _ in range(100)) + deflater.flush()
        _BOMB.append(b"\x01" + body)
    return _BOMB[0]


def zstd_bomb() -> bytes:
    """A message whose zstd frame says (truly) that it holds 1 GiB of zeros, built without
    holding 1 GiB."""
    chunks = zstandard.ZstdCompressor(level=1).chunker(size=1 << 30)
    body = b"".join(chunk for _ in range(1024) for chunk in chunks.compress(bytes(MiB)))
    return b"\x02" + body + b"".join(chunks.finish())


def test_without_zstandard_zstd_is_refused_clearly_and_zlib_still_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zstd_message = MessageCompressor().encode(bytes(1000))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # import zstandard now fails
    with pytest.raises(ConfigError, match=r"pip install 'virtrio\[compression\]'"):
        Compression()
    with pytest.raises(ConfigError, match="zstandard"):
        MessageCompressor()
    zlib_only = MessageCompressor("zlib")
    with pytest.raises(MiddlewareError, match="the peer sent a zstd message"):
        zlib_only.decode(zstd_message, max_size=1000)
    assert zlib_only.decode(zlib_only.encode(bytes(1000)), max_size=1000) == bytes(1000)


@pytest.mark.parametrize("bomb", [zip_bomb, zstd_bomb], ids=["zlib", "zstd"])
def test_a_bomb_is_refused_without_expanding_it(bomb: Callable[[], bytes]) -> None:
    message = bomb()
    assert len(message) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(MiddlewareError, match=f"decompresses to more than {MiB} bytes"):
            MessageCompressor().decode(message, max_size=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MiB


# --- the cipher -------------------------------------------------------------------------------


def handshaken(
    client_key: bytes = KEY, server_key: bytes = KEY
) -> tuple[MessageCipher, MessageCipher]:
    client = MessageCipher(client_key, client=True)
    server = MessageCipher(server_key, client=False)
    client.start(server.hello())
    server.start(client.hello())
    return client, server


def test_hello_format() -> None:
    first, second = MessageCipher(KEY, client=True), MessageCipher(KEY, client=True)
    assert first.hello() == first.hello()
    assert len(first.hello()) == HELLO_SIZE == 37
    assert first.hello()[:5] == HELLO_MAGIC + b"\x01"
    assert first.hello() != second.hello()  # fresh randoms


def test_cipher_matches_the_specified_construction() -> None:
    """HKDF-SHA256 keys salted with client then server random; nonce = 4 zeros + counter."""
    client, server = handshaken()
    salt = client.hello()[5:] + server.hello()[5:]

    def key(info: bytes) -> ChaCha20Poly1305:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info)
        return ChaCha20Poly1305(hkdf.derive(KEY))

    to_server = key(b"virtrio messaging v1 client->server")
    to_client = key(b"virtrio messaging v1 server->client")
    nonces = [bytes(4) + n.to_bytes(8, "big") for n in range(3)]
    for nonce in nonces:
        assert to_server.decrypt(nonce, client.seal(b"up"), None) == b"up"
        assert to_client.decrypt(nonce, server.seal(b"down"), None) == b"down"


@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=100)), max_size=40))
def test_cipher_round_trip_both_ways(exchanges: list[tuple[bool, bytes]]) -> None:
    client, server = handshaken()
    for upward, message in exchanges:
        sender, receiver = (client, server) if upward else (server, client)
        sealed = sender.seal(message)
        assert len(sealed) == len(message) + TAG_SIZE
        assert receiver.open(sealed) == message


@given(st.binary(max_size=64), st.data())
def test_any_flipped_bit_fails_and_the_channel_stays_failed(
    message: bytes, data: st.DataObject
) -> None:
    client, server = handshaken()
    sealed = client.seal(message)
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    tampered = bytearray(sealed)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(MiddlewareError) as caught:
        server.open(bytes(tampered))
    assert str(caught.value).startswith(AUTH_FAILED)  # says nothing of which bit
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(sealed)  # even the genuine message: the direction is no longer trusted


@given(st.binary(max_size=40), st.integers(1, 20))
def test_truncated_or_extended_fails(message: bytes, cut: int) -> None:
    client, server = handshaken()
    sealed = client.seal(message)
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(sealed[:-cut])
    client, server = handshaken()
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(client.seal(message) + bytes(cut))


def test_replay_reorder_drop_reflect_and_wrong_key_fail() -> None:
    client, server = handshaken()
    first = client.seal(b"first")
    assert server.open(first) == b"first"
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(first)  # replayed

    client, server = handshaken()
    first, second = client.seal(b"first"), client.seal(b"second")
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(second)  # reordered, or the first dropped

    client, server = handshaken()
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        client.open(client.seal(b"to myself"))  # reflected back to its sender

    client, server = handshaken(KEY, OTHER_KEY)
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        server.open(client.seal(b"hello"))

    # a message of one connection fails on another that uses the same key
    (client, _), (_, other_server) = handshaken(), handshaken()
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        other_server.open(client.seal(b"hello"))


def test_same_key_never_repeats_a_ciphertext_across_connections() -> None:
    sealed = {handshaken()[0].seal(b"same message") for _ in range(20)}
    assert len(sealed) == 20


@pytest.mark.parametrize(
    ("hello", "error"),
    [
        (b"", "not a virtrio hello"),
        (HELLO_MAGIC + b"\x01" + bytes(31), "not a virtrio hello"),
        (HELLO_MAGIC + b"\x01" + bytes(33), "not a virtrio hello"),
        (b"VTRX\x01" + bytes(32), "not a virtrio hello"),
        (HELLO_MAGIC + b"\x02" + bytes(32), "version 2"),
    ],
)
def test_bad_hello_is_a_clear_error(hello: bytes, error: str) -> None:
    with pytest.raises(MiddlewareError, match=error):
        MessageCipher(KEY, client=True).start(hello)


def test_handshake_state_errors() -> None:
    cipher = MessageCipher(KEY, client=True)
    with pytest.raises(MiddlewareError, match="our own"):
        cipher.start(cipher.hello())
    with pytest.raises(LocalProtocolError, match="before the encryption handshake"):
        cipher.seal(b"x")
    with pytest.raises(LocalProtocolError, match="before the encryption handshake"):
        cipher.open(bytes(16))
    cipher.start(MessageCipher(KEY, client=False).hello())
    with pytest.raises(LocalProtocolError, match="already done"):
        cipher.start(MessageCipher(KEY, client=False).hello())


# --- encryption through the channels ----------------------------------------------------------


async def test_wrong_key_fails_at_the_first_message() -> None:
    ends = await connect([Encryption(KEY)], [Encryption(OTHER_KEY)])
    await ends.client.send(b"hello")
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        await ends.server.receive()
    assert not ends.server.is_connected


async def test_tampered_message_makes_the_channel_unusable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ends = await connect([Encryption(KEY)])
    ends.client_wire.mutate = lambda data: data[:-1] + bytes((data[-1] ^ 1,))
    await ends.client.send(b"hello")
    with pytest.raises(MiddlewareError, match=AUTH_FAILED):
        await ends.server.receive()
    assert not ends.server.is_connected
    with trio.fail_after(10), pytest.raises(MiddlewareError, match=AUTH_FAILED):
        await ends.server.receive()  # at once, without waiting for another message


async def test_oversize_encrypted_message_is_refused_before_decrypting() -> None:
    ends = await connect([Encryption(KEY)], max_size=1000, transport_slack=100)
    await ends.client_wire.send(bytes(1000 + TAG_SIZE + 1))
    with pytest.raises(MiddlewareError, match="1017 bytes; the limit is 1000"):
        await ends.server.receive()


async def test_peer_closing_during_handshake_is_connection_lost() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = LengthPrefixedChannel(client_stream, max_message_size=100)
    server = LengthPrefixedChannel(server_stream, max_message_size=100)
    await server.send_eof()
    with pytest.raises(ConnectionLostError, match="during the encryption handshake"):
        await Encryption(KEY).wrap(client, client=True, max_message_size=100)


@pytest.mark.parametrize("hello", [b"SSH-2.0-OpenSSH_9.6", HELLO_MAGIC + b"\x09" + bytes(32)])
async def test_bad_hello_from_the_peer(hello: bytes) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()
    client = LengthPrefixedChannel(client_stream, max_message_size=100)
    server = LengthPrefixedChannel(server_stream, max_message_size=100)
    await server.send(hello)
    with pytest.raises(MiddlewareError, match="encryption handshake"):
        await Encryption(KEY).wrap(client, client=True, max_message_size=100)


async def test_interrupted_encrypted_send_stops_later_sends() -> None:
    ends = await connect([Encryption(KEY)])
    failure = trio.BrokenResourceError("stream broke")
    ends.client_wire.fail_next = failure
    with pytest.raises(trio.BrokenResourceError) as caught:
        await ends.client.send(b"lost")
    assert caught.value is failure  # the inner error, unchanged
    assert not ends.client.is_connected
    with pytest.raises(ConnectionLostError, match="interrupted"):
        await ends.client.send(b"next")  # would fail authentication at the peer


async def test_concurrent_encrypted_sends_all_authenticate() -> None:
    ends = await connect([Encryption(KEY)])
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(ends.client.send, payload("random", 70_000 + i))
    received = {await ends.server.receive() for _ in range(20)}
    assert received == {payload("random", 70_000 + i) for i in range(20)}


# --- the token bucket -------------------------------------------------------------------------


def test_bucket_starts_full_then_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=100, burst=1000)
    assert bucket.delay(1000, now=5.0) == 0.0
    bucket.take(1000, now=5.0)
    assert bucket.delay(1, now=5.0) == pytest.approx(0.01)
    assert bucket.delay(500, now=5.0) == pytest.approx(5.0)
    assert bucket.delay(500, now=7.0) == pytest.approx(3.0)
    assert bucket.delay(500, now=10.0) == 0.0
    assert bucket.tokens(now=10.0) == pytest.approx(500)


def test_bucket_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=100, burst=1000)
    bucket.take(1000, now=0.0)
    assert bucket.tokens(now=3600.0) == 1000
    bucket.take(1000, now=3600.0)
    assert bucket.delay(100, now=3600.0) == pytest.approx(1.0)


def test_bucket_big_amount_waits_for_full_then_leaves_debt() -> None:
    bucket = TokenBucket(rate=100, burst=1000)
    bucket.take(400, now=0.0)
    assert bucket.delay(5000, now=0.0) == pytest.approx(4.0)  # until full, not 50 s
    assert bucket.delay(5000, now=4.0) == 0.0
    bucket.take(5000, now=4.0)
    assert bucket.tokens(now=4.0) == pytest.approx(-4000)
    assert bucket.delay(1, now=4.0) == pytest.approx(40.01)
    assert bucket.delay(1, now=44.01) == 0.0


def test_bucket_ignores_time_going_backwards() -> None:
    bucket = TokenBucket(rate=100, burst=1000)
    bucket.take(1000, now=10.0)
    assert bucket.tokens(now=5.0) == 0
    assert bucket.tokens(now=11.0) == pytest.approx(100)


def test_bucket_counts_messages() -> None:
    bucket = TokenBucket(rate=2, burst=2)
    times = []
    now = 0.0
    for _ in range(6):
        now += bucket.delay(1, now)
        bucket.take(1, now)
        times.append(now)
    assert times == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])


@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=30),
    st.floats(1, 1e6),
    st.integers(1, 3000),
)
def test_bucket_backlog_holds_the_rate(sizes: list[int], rate: float, burst: int) -> None:
    """Sizes sent back to back: each goes as soon as it may, never beyond rate plus burst."""
    bucket = TokenBucket(rate, burst)
    now, sent = 0.0, 0
    for size in sizes:
        wait = bucket.delay(size, now)
        assert wait >= 0
        now += wait
        assert bucket.delay(size, now) == 0.0  # waiting that long was enough
        # what has gone by now is within what the rate and the burst allow (+ one debt)
        assert sent + size <= burst + rate * now + max(0, size - burst) + 1e-6 * (sent + size)
        bucket.take(size, now)
        sent += size
    # no idle time: the last send is when the bucket first had enough for it
    last = sizes[-1]
    expected = max(0.0, (sent - last + min(last, burst) - burst) / rate)
    assert now == pytest.approx(expected, rel=1e-6, abs=1e-9)


# --- rate limit through the channels (virtual time) -------------------------------------------


async def test_rate_limit_paces_bytes(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1000, burst=1000)])
        start = trio.current_time()
        for _ in range(10):
            await ends.client.send(bytes(1000))
        # 10_000 bytes, the first 1000 free
        assert trio.current_time() - start == pytest.approx(9.0)
        assert [len(await ends.server.receive()) for _ in range(10)] == [1000] * 10
        assert ends.client_wire.sent == [bytes(1000)] * 10  # overhead 0


async def test_rate_limit_default_burst(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        assert RateLimit(10_000).byte_burst == 65536
        assert RateLimit(1e6 + 0.5).byte_burst == 1_000_001
        ends = await connect([RateLimit(10_000)])
        start = trio.current_time()
        for _ in range(20):
            await ends.client.send(bytes(10_000))
        assert trio.current_time() - start == pytest.approx((200_000 - 65536) / 10_000)


async def test_rate_limit_big_message_goes_then_leaves_debt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1000, burst=1000)])
        start = trio.current_time()
        await ends.client.send(bytes(5000))
        assert trio.current_time() == start
        await ends.client.send(b"x")
        assert trio.current_time() - start == pytest.approx(4.001)
        assert await ends.server.receive() == bytes(5000)


async def test_rate_limit_messages_per_second(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1e9, messages_per_second=2)])
        start = trio.current_time()
        times = []
        for _ in range(6):
            await ends.client.send(b"")
            times.append(trio.current_time() - start)
        assert times == pytest.approx([0, 0, 0.5, 1.0, 1.5, 2.0])


async def test_rate_limit_serves_senders_in_order(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1000, burst=1000)])
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(ends.client.send, bytes([i]) * 1000)
                await trio.testing.wait_all_tasks_blocked()  # i calls send before i + 1
        assert trio.current_time() - start == pytest.approx(5.0)
        assert [(await ends.server.receive())[0] for _ in range(6)] == list(range(6))


async def test_rate_limit_cancelled_send_takes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1000, burst=1000)])
        start = trio.current_time()
        await ends.client.send(bytes(1000))
        with trio.move_on_after(0.5):
            await ends.client.send(b"never" * 200)
        await ends.client.send(bytes(1000))
        assert trio.current_time() - start == pytest.approx(1.0)
        assert ends.client_wire.sent == [bytes(1000)] * 2


async def test_rate_limit_does_not_limit_receiving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(1000):
        ends = await connect([RateLimit(1, burst=1)])
        start = trio.current_time()
        for _ in range(3):
            await ends.server_wire.send(bytes(MiB))
        assert [await ends.client.receive() for _ in range(3)] == [bytes(MiB)] * 3
        assert trio.current_time() == start
