"""Sans-I/O Spice link stage: the link packet, the server's reply, auth and the link result.

One link per connection (= per channel). Layouts: spice.proto / /work/shared/lab/spice-notes.md §1.
"""

from __future__ import annotations

import enum
import struct

import attrs

from virtrio.channels.spice._errors import (
    SpiceLinkError,
    SpicePermissionError,
    SpiceProtocolError,
    SpiceVersionError,
)

__all__ = [
    "LINK_MAGIC",
    "ChannelType",
    "LinkErr",
    "LinkReply",
    "build_link_message",
    "check_link_result",
    "encrypt_ticket",
    "parse_link_header",
    "parse_link_reply",
]

LINK_MAGIC = 0x51444552  # "REDQ"
_MAJOR = 2
_MINOR = 2
LINK_HEADER_SIZE = 16
_REPLY_FIXED = 178
_PUBKEY_BYTES = 162
MAX_PASSWORD_BYTES = 60

CAP_AUTH_SELECTION = 0
CAP_AUTH_SPICE = 1
CAP_AUTH_SASL = 2
CAP_MINI_HEADER = 3


class ChannelType(enum.IntEnum):
    """Spice channel types (SPICE_CHANNEL_*)."""

    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class LinkErr(enum.IntEnum):
    """SpiceLinkErr: the server's verdict on a link."""

    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


_ERR_TEXT = {
    LinkErr.ERROR: "generic server error",
    LinkErr.INVALID_MAGIC: "server rejected the link magic",
    LinkErr.INVALID_DATA: "server rejected the link data (e.g. SASL required)",
    LinkErr.VERSION_MISMATCH: "protocol version mismatch",
    LinkErr.NEED_SECURED: "channel requires TLS (use the TLS port)",
    LinkErr.NEED_UNSECURED: "channel requires a plain (non-TLS) connection",
    LinkErr.PERMISSION_DENIED: "permission denied: wrong or missing Spice password",
    LinkErr.BAD_CONNECTION_ID: "unknown session id (main channel gone?)",
    LinkErr.CHANNEL_NOT_AVAILABLE: "no such channel on this server",
}


def caps_words(bits: tuple[int, ...]) -> list[int]:
    """Capability bit numbers → list of u32 words (empty when no bits)."""
    if not bits:
        return []
    words = [0] * (max(bits) // 32 + 1)
    for bit in bits:
        words[bit // 32] |= 1 << (bit % 32)
    return words


def has_cap(words: tuple[int, ...], bit: int) -> bool:
    """Whether capability ``bit`` is set in ``words``."""
    index = bit // 32
    return index < len(words) and bool(words[index] >> (bit % 32) & 1)


def build_link_message(
    connection_id: int,
    channel_type: int,
    channel_id: int,
    common_caps: tuple[int, ...],
    channel_caps: tuple[int, ...],
) -> bytes:
    """The client's SpiceLinkHeader + SpiceLinkMess + caps (caps given as bit numbers)."""
    common = caps_words(common_caps)
    channel = caps_words(channel_caps)
    words = common + channel
    mess = struct.pack(
        "<IBBIII", connection_id, channel_type, channel_id, len(common), len(channel), 18
    ) + struct.pack(f"<{len(words)}I", *words)
    return struct.pack("<IIII", LINK_MAGIC, _MAJOR, _MINOR, len(mess)) + mess


def parse_link_header(data: bytes) -> int:
    """Check a 16-byte server link header; return the size of the reply that follows."""
    if len(data) != LINK_HEADER_SIZE:
        raise SpiceProtocolError(f"link header must be 16 bytes, got {len(data)}")
    magic, major, _minor, size = (int(v) for v in struct.unpack("<IIII", data))
    if magic != LINK_MAGIC:
        raise SpiceProtocolError(f"not a Spice server: bad link magic {magic:#010x}")
    if major != _MAJOR:
        raise SpiceVersionError(
            f"unsupported Spice protocol major version {major}", LinkErr.VERSION_MISMATCH
        )
    if not 4 <= size <= 65536:
        raise SpiceProtocolError(f"link reply size {size} out of range")
    return size


@attrs.frozen
class LinkReply:
    """The server's SpiceLinkReply."""

    error: int
    pub_key: bytes
    common_caps: tuple[int, ...]
    channel_caps: tuple[int, ...]


def parse_link_reply(data: bytes) -> LinkReply:
    """Parse a SpiceLinkReply body; a non-OK error raises :class:`SpiceLinkError`."""
    if len(data) >= 4:
        (error,) = struct.unpack_from("<I", data)
        if error != LinkErr.OK:
            raise link_error(error)
    if len(data) < _REPLY_FIXED:
        raise SpiceProtocolError(f"link reply too short ({len(data)} bytes)")
    pub_key = bytes(data[4 : 4 + _PUBKEY_BYTES])
    n_common, n_channel, offset = struct.unpack_from("<III", data, 166)
    end = offset + 4 * (n_common + n_channel)
    if offset < _REPLY_FIXED or end > len(data):
        raise SpiceProtocolError("link reply capabilities lie outside the reply")
    words = struct.unpack_from(f"<{n_common + n_channel}I", data, offset)
    return LinkReply(0, pub_key, tuple(words[:n_common]), tuple(words[n_common:]))


def link_error(code: int) -> SpiceLinkError:
    """The exception for link error ``code`` (PERMISSION_DENIED → :class:`SpicePermissionError`)."""
    try:
        err = LinkErr(code)
    except ValueError:
        return SpiceLinkError(f"Spice link failed with unknown error {code}", code)
    text = f"Spice link failed: {_ERR_TEXT.get(err, err.name)} ({err.name})"
    if err is LinkErr.PERMISSION_DENIED:
        return SpicePermissionError(text, code)
    if err is LinkErr.VERSION_MISMATCH:
        return SpiceVersionError(text, code)
    return SpiceLinkError(text, code)


def check_link_result(data: bytes) -> None:
    """Check the 4-byte link result; raise the mapped error unless OK."""
    if len(data) != 4:
        raise SpiceProtocolError(f"link result must be 4 bytes, got {len(data)}")
    (code,) = struct.unpack("<I", data)
    if code != LinkErr.OK:
        raise link_error(code)


def encrypt_ticket(pub_key_der: bytes, password: str) -> bytes:
    """RSA-OAEP(SHA-1) of ``password`` + NUL with the server key (always sent, even without a
    password: the server decrypts before checking whether ticketing is on)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    raw = password.encode() + b"\0"
    if len(raw) > MAX_PASSWORD_BYTES + 1:
        raise SpiceLinkError(
            f"Spice password longer than {MAX_PASSWORD_BYTES} bytes", LinkErr.ERROR
        )
    try:
        key = load_der_public_key(pub_key_der)
    except ValueError as exc:
        raise SpiceProtocolError(f"server sent an invalid RSA public key: {exc}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SpiceProtocolError("server public key is not RSA")
    return key.encrypt(
        raw,
        padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )
