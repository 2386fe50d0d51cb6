"""Messages into packets: :func:`encode_message` and the buffers of a gathering write,
:func:`encode_message_parts` (each header, then a view of its payload; the MessageData packets
framed by :func:`~._loops.encode_data_packets`)."""

from __future__ import annotations

from ._loops import encode_data_packets
from ._wire import (
    HEADER,
    MAGIC,
    MESSAGE_HEAD,
    MESSAGE_HEAD_SIZE,
    VERSION,
    PacketType,
    crc32,
)

__all__ = ["encode_message", "encode_message_parts"]


def encode_message(view: memoryview, max_payload: int, seq: int, message_id: int) -> bytes:
    """Every packet of one message, in one buffer: a Data packet if it fits in
    ``max_payload`` bytes, else a MessageHead (with ``message_id``) and MessageData packets,
    numbered from ``seq`` on (the caller has checked that at most 2**32-1 are needed)."""
    return b"".join(encode_message_parts(view, max_payload, seq, message_id))


def encode_message_parts(
    view: memoryview, max_payload: int, seq: int, message_id: int
) -> list[bytes | memoryview]:
    """:func:`encode_message` as the buffers to write one after the other: each packet's
    header, then its payload as a view of ``view`` (which must not change until they are
    written)."""
    size, pack = len(view), HEADER.pack
    if size <= max_payload:
        return [pack(MAGIC, VERSION, PacketType.DATA, seq, size, crc32(view)), view]
    count = -(-size // max_payload)
    head = MESSAGE_HEAD.pack(size, message_id, count, 0)
    parts: list[bytes | memoryview] = [
        pack(MAGIC, VERSION, PacketType.MESSAGE_HEAD, seq, MESSAGE_HEAD_SIZE, crc32(head)),
        head,
    ]
    encode_data_packets(view, max_payload, seq + 1, crc32, parts)
    return parts
