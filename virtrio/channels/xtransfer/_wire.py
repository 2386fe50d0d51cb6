"""xtransport's packet layout (kylin-x-kernel/xtransfer @ e6d1ffe, vendored as-is by virga 0.1).

All integers are little-endian. A packet is a 16-byte header followed by ``length`` payload
bytes; the CRC-32 covers the payload only::

    magic u32 = 0x58545250 ("PRTX" on the wire) | version u8 = 1 | type u8 | seq u32
    | length u16 | crc32 u32

A message longer than one packet's payload travels as a MessageHead packet (a 32-byte
``total_length u64, message_id u64, packet_count u32, flags u32, reserved 8`` payload) followed
by ``packet_count`` MessageData packets.
"""

from __future__ import annotations

import enum
import struct

from virtrio.errors import ProtocolError, VirtrioError

# The same CRC-32 (IEEE) as zlib's, computed faster: zlib-ng takes ~70-100 ns for a 1-4 KiB
# payload, ISA-L ~210-240 (a fixed cost per call above 64 bytes), zlib 1.2 ~500-900.
try:
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - the xtransport extra installs zlib-ng
    from zlib import crc32

__all__ = [
    "DATA_HEADER",
    "DATA_PREFIX",
    "DATA_TAIL",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "MESSAGE_HEAD",
    "MESSAGE_HEAD_SIZE",
    "VERSION",
    "PacketType",
    "XtransferChecksumError",
    "XtransferError",
    "XtransferFramingError",
    "XtransferMagicError",
    "XtransferMessageTooLargeError",
    "XtransferProtocolError",
    "XtransferTruncatedError",
    "XtransferVersionError",
    "checksum_error",
    "crc32",
    "encode_packet",
    "header_error",
]

MAGIC = 0x58545250
VERSION = 1
HEADER = struct.Struct("<IBBIHI")
HEADER_SIZE = HEADER.size
MESSAGE_HEAD = struct.Struct("<QQII8x")
MESSAGE_HEAD_SIZE = MESSAGE_HEAD.size
#: The u16 length field bounds a packet's payload, so a frame is at most 16 + 65535 bytes.
MAX_PAYLOAD = 0xFFFF
MAX_FRAME_SIZE = HEADER_SIZE + MAX_PAYLOAD


class PacketType(enum.IntEnum):
    """The ``type`` byte of a packet header."""

    DATA = 0
    MESSAGE_HEAD = 1
    MESSAGE_DATA = 2
    ACK = 3


#: A MessageData header is these 6 bytes (magic, version, type), then seq, length and CRC:
#: :data:`DATA_HEADER` (``DATA_TAIL`` for the last three), a packet's hot path.
DATA_PREFIX = HEADER.pack(MAGIC, VERSION, PacketType.MESSAGE_DATA, 0, 0, 0)[:6]
DATA_HEADER = struct.Struct("<6sIHI")
DATA_TAIL = struct.Struct("<IHI")


class XtransferError(VirtrioError):
    """Base of the xtransport errors (each is also one of the generic classes of
    :mod:`virtrio.errors`)."""


class XtransferProtocolError(XtransferError, ProtocolError):
    """The peer sent bytes that are not valid xtransport; the connection cannot be resynced."""


class XtransferMagicError(XtransferProtocolError):
    """A packet header did not start with the magic ``PRTX``."""


class XtransferVersionError(XtransferProtocolError):
    """A packet header carried a protocol version other than 1."""


class XtransferChecksumError(XtransferProtocolError):
    """A packet's payload did not match the CRC-32 in its header."""


class XtransferFramingError(XtransferProtocolError):
    """A packet of an unknown or unexpected type, a malformed MessageHead or Ack, or message
    pieces that do not add up to the announced length (xtransfer's ``InvalidPacket``)."""


class XtransferMessageTooLargeError(XtransferProtocolError):
    """A MessageHead announced more bytes than the receiver's ``max_message_size``."""


class XtransferTruncatedError(XtransferProtocolError):
    """The byte stream ended inside a packet or inside a multi-packet message."""


def encode_packet(kind: PacketType, seq: int, payload: bytes | memoryview = b"") -> bytes:
    """One packet, header and payload in one buffer (``payload`` at most 65535 bytes)."""
    return (
        HEADER.pack(MAGIC, VERSION, kind, seq, len(payload), crc32(payload) if payload else 0)
        + payload
    )


def header_error(magic: int, version: int, raw: bytes) -> XtransferProtocolError:
    """The error for a header with a bad ``magic`` or ``version`` (``raw``: its first bytes)."""
    if magic != MAGIC:
        return XtransferMagicError(
            f"bad packet magic {raw[:4].hex(' ')} (expected 50 52 54 58, 'PRTX')"
        )
    return XtransferVersionError(f"unsupported packet version {version} (expected 1)")


def checksum_error(seq: int, crc: int, length: int, actual: int) -> XtransferChecksumError:
    """The error for a payload whose CRC-32 is ``actual`` where the header says ``crc``."""
    return XtransferChecksumError(
        f"CRC mismatch in packet seq {seq}: header says {crc:#010x},"
        f" the {length}-byte payload has {actual:#010x}"
    )
