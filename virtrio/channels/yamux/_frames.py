"""yamux frames: the 12-byte big-endian header and its constants (hashicorp/yamux spec.md)."""

from __future__ import annotations

import enum
import struct
from typing import Final

__all__ = [
    "DEFAULT_WINDOW",
    "HEADER",
    "HEADER_SIZE",
    "VERSION",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "encode_header",
]

VERSION: Final = 0
HEADER: Final = struct.Struct("!BBHII")  # version, type, flags, stream id, length
HEADER_SIZE: Final = HEADER.size
#: Every stream starts with this much credit in each direction.
DEFAULT_WINDOW: Final = 256 * 1024


class FrameType(enum.IntEnum):
    """The frame types; only Data carries a body."""

    DATA = 0
    WINDOW_UPDATE = 1
    PING = 2
    GO_AWAY = 3


class Flag(enum.IntFlag):
    """Header flags (may be combined: SYN|FIN is an empty stream)."""

    NONE = 0
    SYN = 1
    ACK = 2
    FIN = 4
    RST = 8


class GoAwayCode(enum.IntEnum):
    """Why a session ends."""

    NORMAL = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


def encode_header(kind: FrameType, flags: int, stream_id: int, length: int) -> bytes:
    """One header. ``length`` is the body size (Data), the credit delta (WindowUpdate), the
    opaque value (Ping) or the error code (GoAway)."""
    return HEADER.pack(VERSION, kind, flags, stream_id, length)
