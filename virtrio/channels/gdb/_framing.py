"""RSP framing: ``$payload#cs`` packets, escapes, run-length encoding and acks (no I/O).

A packet is ``$``, the payload, ``#`` and two hex digits: the payload's bytes summed modulo 256,
as they travel (escaped and run-length encoded). Inside a payload ``}`` escapes the next byte
(which travels XOR 0x20), so ``$``, ``#``, ``}`` and ``*`` can be sent as data; ``X*n``
repeats the byte before it ``ord(n) - 29`` more times (stubs use it in replies). Between
packets the receiver acknowledges each one with ``+`` (or ``-``: send it again), until both
sides agree on ``QStartNoAckMode``.

>>> encode_packet(b"m1000,4")
b'$m1000,4#8e'
>>> decode_payload(b"0*#")  # "0" and 6 more
b'0000000'
"""

from __future__ import annotations

import zlib

import attrs

from ._errors import GdbProtocolError

__all__ = [
    "Ack",
    "Nak",
    "Notification",
    "Packet",
    "PacketReader",
    "checksum",
    "decode_payload",
    "encode_packet",
    "escape",
    "plain_packet",
]

_ESCAPED = frozenset(b"$#}*")
_HEX_DIGITS = b"0123456789abcdefABCDEF"
#: Every two-digit checksum as sent, with its value (a lookup beats parsing it each time).
_CHECKSUMS = {bytes((a, b)): int(bytes((a, b)), 16) for a in _HEX_DIGITS for b in _HEX_DIGITS}


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The RSP checksum: the bytes summed modulo 256."""
    n = len(data)
    if n < 64:
        return sum(data) & 0xFF
    # sum() walks the bytes as Python ints (~20 µs for a 1 KiB reply here). Adler-32's low half
    # is 1 + the bytes' sum modulo 65521, which is the exact sum for up to 256 bytes (at most
    # 65280), so zlib does the adding, 256 bytes at a time, in C; 515 at a time for ASCII
    # (hex replies: at most 65405), half the calls. Slices of bytes (a copy, in C) cost less
    # than memoryview slices here.
    if type(data) is bytes and data.isascii():
        step = 515
    else:
        data = memoryview(data).cast("B")
        step = 256
    adler = zlib.adler32
    total = 0
    for start in range(0, n, step):
        total += adler(data[start : start + step]) & 0xFFFF
    return (total - (n + step - 1) // step) & 0xFF  # each chunk's 1 taken off


def escape(data: bytes | bytearray | memoryview) -> bytes:
    """Escape ``$``, ``#``, ``}`` and ``*`` in binary data (for ``X`` and ``vFile`` payloads)."""
    raw = bytes(data)
    if not any(b in _ESCAPED for b in raw):
        return raw
    out = bytearray()
    for b in raw:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def encode_packet(payload: bytes | bytearray | memoryview, *, notification: bool = False) -> bytes:
    """Frame ``payload`` (already escaped where it carries binary data) as a packet."""
    body = bytes(payload)
    if 0x24 in body or 0x23 in body:  # '$' or '#' would start or end a packet
        raise ValueError(f"packet payload contains an unescaped '$' or '#': {body[:64]!r}")
    lead = b"%" if notification else b"$"
    return b"%s%s#%02x" % (lead, body, checksum(body))


def decode_payload(raw: bytes | bytearray | memoryview) -> bytes:
    """Undo escapes and run-length encoding of a received payload.

    Raises:
        GdbProtocolError: an escape at the end, or a run with nothing before it or an invalid
            count.
    """
    data = bytes(raw)
    if 0x7D not in data and 0x2A not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x7D:
            if i + 1 >= n:
                raise GdbProtocolError(f"packet ends inside an escape: {data[-64:]!r}")
            out.append(data[i + 1] ^ 0x20)
            i += 2
        elif b == 0x2A:
            if not out or i + 1 >= n:
                raise GdbProtocolError(f"run-length '*' with nothing to repeat: {data[:64]!r}")
            count = data[i + 1] - 29
            if count < 0:
                raise GdbProtocolError(f"invalid run length {data[i + 1]!r} in {data[:64]!r}")
            out += bytes((out[-1],)) * count
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def plain_packet(data: bytes, start: int = 0) -> bytes | None:
    """The payload if ``data[start:]`` is exactly one intact ``$...#cs`` packet without escapes
    or run-length encoding (a stub's usual reply, whole in one read), else None; what
    :class:`PacketReader` would make of it in that case, in a few C-level scans.

    >>> plain_packet(b"$OK#9a"), plain_packet(b"$O}K#9a"), plain_packet(b"$OK#00")
    (b'OK', None, None)
    >>> plain_packet(b"+$OK#9a", 1)
    b'OK'
    """
    if len(data) < start + 4 or data[start] != 0x24 or data[-3] != 0x23:  # '$', '#'
        return None
    payload = data[start + 1 : -3]
    # (ints, not b"#": bytes.__contains__ tries a bytes needle as an int first, and clears
    # the TypeError: ~150 ns a test in CPython 3.11)
    if 0x23 in payload or 0x24 in payload or 0x7D in payload or 0x2A in payload:  # #$}*
        return None  # more than one frame, or escapes: the general path
    if _CHECKSUMS.get(data[-2:]) != checksum(payload):
        return None  # (a bad checksum is the general path's to answer)
    return payload


@attrs.frozen
class Packet:
    """A received packet: its decoded payload."""

    payload: bytes


@attrs.frozen
class Notification:
    """A received ``%`` notification (non-stop mode's ``Stop:...``): its decoded payload."""

    payload: bytes


@attrs.frozen
class Ack:
    """A ``+``: the peer received our last packet intact."""


@attrs.frozen
class Nak:
    """A ``-``: the peer wants our last packet again."""


@attrs.frozen
class _BadChecksum:
    expected: int
    actual: int
    raw: bytes


Frame = Packet | Notification | Ack | Nak | _BadChecksum
# immutable, so one of each serves every ack (one comes before each reply in ack mode)
_ACK = Ack()
_NAK = Nak()

#: A payload larger than this without its ``#`` is refused (QEMU's largest is its target.xml
#: annexes, read in PacketSize pieces; 4 KiB on QEMU 7.2).
DEFAULT_MAX_PACKET = 1 << 20


class PacketReader:
    """Splits received bytes into frames, whatever the chunking.

    ``receive_data`` appends; ``next_frame`` returns the next complete frame or None. A packet
    whose checksum is wrong comes out as a private ``_BadChecksum`` frame, which the protocol
    answers with ``-`` (ack mode) or treats as fatal (no-ack mode).

    Raises (from :meth:`next_frame`):
        GdbProtocolError: a byte outside a packet that is not ``+``, ``-`` or ``$``/``%``, a
            checksum that is not hex, or a packet over ``max_packet`` bytes.
    """

    def __init__(self, *, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buffer = bytearray()
        self._max_packet = max_packet

    @property
    def buffered(self) -> int:
        """Bytes received and not yet framed."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None when more bytes are needed."""
        buf = self._buffer
        if not buf:
            return None
        lead = buf[0]
        if lead == 0x2B:  # '+'
            del buf[0]
            return _ACK
        if lead == 0x2D:  # '-'
            del buf[0]
            return _NAK
        if lead not in (0x24, 0x25):  # '$', '%'
            raise GdbProtocolError(
                f"unexpected byte {bytes((lead,))!r} between packets (before {bytes(buf[:32])!r})"
            )
        end = buf.find(b"#", 1)
        if end < 0:
            if len(buf) > self._max_packet:
                raise GdbProtocolError(f"packet longer than {self._max_packet} bytes")
            return None
        if len(buf) < end + 3:
            return None
        raw = bytes(buf[1:end])
        digits = bytes(buf[end + 1 : end + 3])
        del buf[: end + 3]
        expected = _CHECKSUMS.get(digits)
        if expected is None:
            raise GdbProtocolError(f"checksum {digits!r} is not hex (packet {raw[:64]!r})")
        actual = checksum(raw)
        if actual != expected:
            return _BadChecksum(expected, actual, raw)
        payload = decode_payload(raw)
        return Notification(payload) if lead == 0x25 else Packet(payload)
