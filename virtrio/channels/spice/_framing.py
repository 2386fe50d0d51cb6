"""Sans-I/O Spice message framing (after the link): mini or full data headers, sub-message lists.

:class:`MessageReader` takes bytes in any split and yields :class:`Message` objects; sub-messages
(full-header ``sub_list`` or a mini-header ``SPICE_MSG_LIST``) come out before their container.
:class:`MessageWriter` numbers and frames outgoing messages.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import attrs

from virtrio.channels.spice._errors import SpiceProtocolError

__all__ = ["MAX_MESSAGE", "Message", "MessageReader", "MessageWriter"]

#: Largest body accepted (a full 4K xRGB bitmap is ~33 MB).
MAX_MESSAGE = 64 * 1024 * 1024

MSG_MIGRATE = 1
MSG_MIGRATE_DATA = 2
MSG_SET_ACK = 3
MSG_PING = 4
MSG_WAIT_FOR_CHANNELS = 5
MSG_DISCONNECTING = 6
MSG_NOTIFY = 7
MSG_LIST = 8

MSGC_ACK_SYNC = 1
MSGC_ACK = 2
MSGC_PONG = 3
MSGC_DISCONNECTING = 6


@attrs.frozen
class Message:
    """One server message: its type, body, and (for acking) whether it was a sub-message."""

    type: int
    body: bytes
    sub: bool = False


def _sub_messages(body: bytes, list_offset: int) -> list[Message]:
    try:
        (count,) = struct.unpack_from("<H", body, list_offset)
        offsets = struct.unpack_from(f"<{count}I", body, list_offset + 2)
        subs = []
        for off in offsets:
            mtype, size = struct.unpack_from("<HI", body, off)
            if off + 6 + size > len(body):
                raise SpiceProtocolError("sub-message runs past its container")
            subs.append(Message(mtype, body[off + 6 : off + 6 + size], sub=True))
    except struct.error:
        raise SpiceProtocolError("malformed sub-message list") from None
    return subs


class MessageReader:
    """Turn the received byte stream into messages."""

    def __init__(self, *, mini_header: bool) -> None:
        self._mini = mini_header
        self._header = 6 if mini_header else 18
        self._buffer = bytearray()
        #: count of received (top-level) messages = the implicit serial with mini headers
        self.last_serial = 0

    def feed(self, data: bytes | bytearray) -> Iterator[Message]:
        """Add ``data``; yield every message it completes (sub-messages first)."""
        self._buffer += data
        while len(self._buffer) >= self._header:
            if self._mini:
                mtype, size = struct.unpack_from("<HI", self._buffer)
                sub_list = 0
                serial = self.last_serial + 1
            else:
                serial, mtype, size, sub_list = struct.unpack_from("<QHII", self._buffer)
            if size > MAX_MESSAGE:
                raise SpiceProtocolError(f"message of {size} bytes exceeds the limit")
            if len(self._buffer) < self._header + size:
                return
            with memoryview(self._buffer) as view:  # one copy out, not two
                body = bytes(view[self._header : self._header + size])
            del self._buffer[: self._header + size]
            self.last_serial = serial
            if sub_list:
                yield from _sub_messages(body, sub_list)
                yield Message(mtype, body[:sub_list])
            elif mtype == MSG_LIST:
                yield from _sub_messages(body, 0)
                yield Message(mtype, b"")
            else:
                yield Message(mtype, body)

    @property
    def pending(self) -> int:
        """Bytes received but not yet forming a whole message."""
        return len(self._buffer)


class MessageWriter:
    """Frame outgoing client messages."""

    def __init__(self, *, mini_header: bool) -> None:
        self._mini = mini_header
        self._serial = 0

    def frame(self, mtype: int, body: bytes = b"") -> bytes:
        """Header + body for one message."""
        if self._mini:
            return struct.pack("<HI", mtype, len(body)) + body
        self._serial += 1
        return struct.pack("<QHII", self._serial, mtype, len(body), 0) + body


class AckWindow:
    """Client side of SET_ACK/ACK flow control: feed each message, get what to send back."""

    def __init__(self) -> None:
        self._window = 0
        self._count = 0

    def on_message(self, msg: Message) -> list[tuple[int, bytes]]:
        """Replies due for ``msg`` (ACK_SYNC on SET_ACK, ACK each window)."""
        if msg.type == MSG_SET_ACK and not msg.sub:
            if len(msg.body) < 8:
                raise SpiceProtocolError("SET_ACK body too short")
            generation, window = struct.unpack_from("<II", msg.body)
            self._window = self._count = window
            return [(MSGC_ACK_SYNC, struct.pack("<I", generation))]
        if msg.sub or not self._window:
            return []
        self._count -= 1
        if self._count <= 0:
            self._count = self._window
            return [(MSGC_ACK, b"")]
        return []


def pong_for(body: bytes) -> bytes:
    """PONG body for a PING body: id + timestamp only."""
    if len(body) < 12:
        raise SpiceProtocolError("PING body too short")
    return body[:12]


@attrs.frozen
class Notify:
    """A NOTIFY message."""

    severity: int
    visibility: int
    what: int
    text: str


def parse_notify(body: bytes) -> Notify:
    """Parse NOTIFY."""
    try:
        _ts, severity, visibility, what, length = struct.unpack_from("<QIIII", body)
    except struct.error:
        raise SpiceProtocolError("NOTIFY body too short") from None
    text = body[24 : 24 + length].rstrip(b"\0").decode(errors="replace")
    return Notify(severity, visibility, what, text)
