"""docs/messaging-encryption.md's test vectors: computed from the primitives as the page
specifies them, and produced by MessageCipher; both must give the page's bytes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from virtrio.channels.messaging import MessageCipher, MiddlewareError

SPEC = Path(__file__).resolve().parents[3] / "docs" / "messaging-encryption.md"


def vectors() -> dict[str, bytes]:
    block = re.search(r"```vectors\n(.*?)```", SPEC.read_text(), re.DOTALL)
    assert block, f"no vectors block in {SPEC}"
    return {
        name: bytes.fromhex(value)
        for name, value in (line.split() for line in block[1].splitlines() if line.strip())
    }


def hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def nonce(counter: int) -> bytes:
    return bytes(4) + counter.to_bytes(8, "big")


def test_the_primitives_as_specified_give_the_vectors() -> None:
    v = vectors()
    assert v["client_hello"] == b"VTRE\x01" + v["client_random"]
    assert v["server_hello"] == b"VTRE\x01" + v["server_random"]
    salt = v["client_random"] + v["server_random"]
    to_server = hkdf(v["key"], salt, b"virtrio messaging v1 client->server")
    to_client = hkdf(v["key"], salt, b"virtrio messaging v1 server->client")
    assert to_server == v["client_to_server_key"]
    assert to_client == v["server_to_client_key"]
    assert ChaCha20Poly1305(to_server).encrypt(nonce(0), b"hello", None) == v["client_message_0"]
    assert ChaCha20Poly1305(to_server).encrypt(nonce(1), b"hello", None) == v["client_message_1"]
    assert ChaCha20Poly1305(to_client).encrypt(nonce(0), b"", None) == v["server_message_0"]


def test_message_cipher_gives_the_vectors() -> None:
    v = vectors()
    client = MessageCipher(v["key"], client=True, random=v["client_random"])
    server = MessageCipher(v["key"], client=False, random=v["server_random"])
    assert client.hello() == v["client_hello"]
    assert server.hello() == v["server_hello"]
    client.start(server.hello())
    server.start(client.hello())
    assert client.seal(b"hello") == v["client_message_0"]
    assert client.seal(b"hello") == v["client_message_1"]
    assert server.seal(b"") == v["server_message_0"]
    assert server.open(v["client_message_0"]) == b"hello"
    with pytest.raises(MiddlewareError, match="failed authentication"):
        server.open(v["client_message_0"])  # replayed: counter 1 expects client_message_1
    assert client.open(v["server_message_0"]) == b""
