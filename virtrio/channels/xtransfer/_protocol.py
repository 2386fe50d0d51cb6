"""The sans-I/O xtransport connection: messages in, bytes out; bytes in, events out.

::

    conn = XtransferProtocol(XtransferConfig(max_frame_size=1024))
    ticket = conn.send_message(b"hello")
    sock.sendall(conn.data_to_send())
    conn.receive_data(sock.recv(65536))       # b"" at end of stream
    while not isinstance(event := conn.next_event(), NeedData):
        ...                                   # Message, MessageDelivered or ConnectionClosed

Without ack mode a message is delivered as far as this side can tell once its bytes are
written. In ack mode (``XtransferConfig(ack=True)``) every packet waits for the peer's Ack
before the next one is released, exactly as xtransfer's stop-and-wait does;
:class:`MessageDelivered` reports a message whose last packet was acknowledged, and every
packet received is acknowledged at once. Unlike xtransfer this side also accepts the peer's
messages while its own wait for an Ack (xtransfer itself is half-duplex in ack mode: it rejects
a Data packet where it expects an Ack, so do not send while a real xtransfer peer sends).

Like xtransfer, sequence numbers and message ids are sent correctly but not checked on receipt;
magic, version, CRC, packet types and (stricter than xtransfer) that the MessageData pieces add
up exactly to the announced length are. Any error is final: the byte stream cannot be resynced.
"""

from __future__ import annotations

from collections import deque

import attrs

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData
from virtrio.errors import ConfigError, LocalProtocolError

from ._wire import (
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_FRAME_SIZE,
    MAX_PAYLOAD,
    MESSAGE_HEAD,
    MESSAGE_HEAD_SIZE,
    VERSION,
    PacketType,
    XtransferChecksumError,
    XtransferError,
    XtransferFramingError,
    XtransferMagicError,
    XtransferMessageTooLargeError,
    XtransferTruncatedError,
    XtransferVersionError,
    crc32,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "Message",
    "MessageDelivered",
    "NeedData",
    "XtransferConfig",
    "XtransferProtocol",
]

#: Largest message accepted by default (a MessageHead announcing more is an error).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


def _check_frame_size(_: object, __: object, value: int) -> None:
    if not HEADER_SIZE < value <= MAX_FRAME_SIZE:
        raise ConfigError(
            f"max_frame_size {value} is out of range: it must be"
            f" {HEADER_SIZE + 1}..{MAX_FRAME_SIZE} (a {HEADER_SIZE}-byte header plus"
            f" 1..{MAX_PAYLOAD} payload bytes)"
        )


def _check_message_size(_: object, __: object, value: int) -> None:
    if not 0 <= value <= _U64:
        raise ConfigError(f"max_message_size {value} is not in 0..2**64-1")


@attrs.frozen
class XtransferConfig:
    """Options of one xtransport endpoint (xtransfer's ``TransportConfig``).

    Neither is negotiated: both ends must agree on ``ack``; ``max_frame_size`` only shapes what
    this side sends (any packet up to 65535 payload bytes is accepted).
    """

    #: Largest packet this side sends, header included (xtransfer's default 4096; virga's 1024).
    max_frame_size: int = attrs.field(default=4096, validator=_check_frame_size)
    #: Stop-and-wait: every packet is acknowledged by the receiver before the next is sent.
    ack: bool = False
    #: Largest message accepted from the peer; bounds the memory one message can take.
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, validator=_check_message_size
    )

    @property
    def max_payload(self) -> int:
        """Payload bytes per packet this side sends."""
        return self.max_frame_size - HEADER_SIZE


@attrs.frozen
class Message:
    """A complete message from the peer."""

    data: bytes


@attrs.frozen
class MessageDelivered:
    """Ack mode: the peer acknowledged the last packet of the message with this ticket."""

    ticket: int


Event = Message | MessageDelivered | ConnectionClosed


@attrs.define
class _Assembly:
    """A multi-packet message being received."""

    total: int
    remaining_packets: int
    pieces: list[bytes] = attrs.Factory(list)
    received: int = 0


class XtransferProtocol:
    """One end of an xtransport connection, without I/O (see the module docs)."""

    def __init__(self, config: XtransferConfig | None = None) -> None:
        self.config = config if config is not None else XtransferConfig()
        self._send_seq = 0
        self._message_id = 1
        self._tickets = 0
        self._out: list[bytes | memoryview] = []
        # ack mode: packets not yet released, each with the ticket it completes (or None)
        self._pending: deque[tuple[PacketType, bytes, int | None]] = deque()
        self._awaiting_ack: tuple[int, int | None] | None = None
        self._buffer = bytearray()
        self._assembly: _Assembly | None = None
        self._events: deque[Event] = deque()
        self._error = ErrorState()
        self._eof = False

    # -- sending -----------------------------------------------------------------------------

    def send_message(self, data: bytes | bytearray | memoryview) -> int:
        """Queue one message; returns its ticket (1, 2, ...), reported by
        :class:`MessageDelivered` in ack mode. Take the bytes with :meth:`data_to_send`.

        Raises:
            LocalProtocolError: the message needs more than 2**32-1 packets.
        """
        # a private immutable copy unless it is one already: slices of it wait in the queue
        view = memoryview(data if isinstance(data, bytes) else bytes(data)).cast("B")
        payload = self.config.max_payload
        self._tickets += 1
        ticket = self._tickets
        if len(view) <= payload:
            self._queue(PacketType.DATA, bytes(view), ticket)
            return ticket
        count = -(-len(view) // payload)
        if count > _U32:
            raise LocalProtocolError(f"a {len(view)}-byte message needs more than 2**32-1 packets")
        head = MESSAGE_HEAD.pack(len(view), self._message_id, count, 0)
        self._message_id = (self._message_id + 1) & _U64
        self._queue(PacketType.MESSAGE_HEAD, head, None)
        last = count - 1
        for index in range(count):
            piece = view[index * payload : (index + 1) * payload]
            self._queue(PacketType.MESSAGE_DATA, piece, ticket if index == last else None)
        return ticket

    def _queue(self, kind: PacketType, payload: bytes | memoryview, ticket: int | None) -> None:
        if self.config.ack:
            self._pending.append((kind, bytes(payload), ticket))
            self._release()
        else:
            self._emit(kind, payload)

    def _emit(self, kind: PacketType, payload: bytes | memoryview) -> int:
        seq = self._next_seq()
        crc = crc32(payload) if payload else 0
        # header and payload joined once, in data_to_send
        self._out += (HEADER.pack(MAGIC, VERSION, kind, seq, len(payload), crc), payload)
        return seq

    def _release(self) -> None:
        """Ack mode: put the next pending packet on the wire if none awaits its Ack."""
        if self._awaiting_ack is None and self._pending:
            kind, payload, ticket = self._pending.popleft()
            self._awaiting_ack = (self._emit(kind, payload), ticket)

    def data_to_send(self) -> bytes:
        """The bytes to write now, in order (empty if none)."""
        out, self._out = self._out, []
        return b"".join(out)

    @property
    def awaiting_ack(self) -> bool:
        """Ack mode: a packet was sent and its Ack has not arrived yet."""
        return self._awaiting_ack is not None

    # -- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer (``b""`` for end of stream) and parse every complete packet.

        Events before a protocol error are kept; the error is raised by :meth:`next_event`
        once they have been taken.
        """
        if self._error.failed or self._eof:
            return
        if not data:
            self._eof = True
            if self._buffer or self._assembly is not None:
                self._fail(
                    XtransferTruncatedError(
                        f"the stream ended inside a {'message' if self._assembly else 'packet'}"
                        f" ({self._describe_partial()})"
                    )
                )
            else:
                self._events.append(ConnectionClosed())
            return
        self._buffer += data
        try:
            self._parse()
        except XtransferError as exc:
            self._fail(exc)

    def next_event(self) -> Event | NeedData:
        """The next event, or :data:`NEED_DATA`.

        Raises:
            XtransferError: (a subclass naming the fault) the peer broke the protocol; raised
                again on every later call.
        """
        if self._events:
            return self._events.popleft()
        self._error.check()
        return NEED_DATA

    def _fail(self, exc: XtransferError) -> None:
        self._error.keep(exc)
        self._buffer.clear()
        self._assembly = None

    def _describe_partial(self) -> str:
        if self._assembly is not None:
            return f"{self._assembly.received} of {self._assembly.total} bytes"
        return f"{len(self._buffer)} bytes of a packet"

    def _parse(self) -> None:
        buffer = self._buffer
        view = memoryview(buffer)
        offset = 0
        try:
            while len(buffer) - offset >= HEADER_SIZE:
                magic, version, kind, seq, length, crc = HEADER.unpack_from(buffer, offset)
                if magic != MAGIC:
                    raise XtransferMagicError(
                        f"bad packet magic {bytes(view[offset : offset + 4]).hex(' ')}"
                        " (expected 50 52 54 58, 'PRTX')"
                    )
                if version != VERSION:
                    raise XtransferVersionError(
                        f"unsupported packet version {version} (expected 1)"
                    )
                end = offset + HEADER_SIZE + length
                if end > len(buffer):
                    break
                with view[offset + HEADER_SIZE : end] as payload:
                    if (crc32(payload) if length else 0) != crc:
                        raise XtransferChecksumError(
                            f"CRC mismatch in packet seq {seq}: header says {crc:#010x},"
                            f" the {length}-byte payload has {crc32(payload):#010x}"
                        )
                    self._on_packet(kind, seq, payload)
                offset = end
        finally:
            view.release()
            del buffer[:offset]

    def _on_packet(self, kind: int, seq: int, payload: memoryview) -> None:
        if kind == PacketType.ACK:
            self._on_ack(seq, payload)
            return
        self._accept(kind, seq, payload)
        if self.config.ack:
            self._emit(PacketType.ACK, seq.to_bytes(4, "little"))

    def _accept(self, kind: int, seq: int, payload: memoryview) -> None:
        assembly = self._assembly
        if kind == PacketType.MESSAGE_DATA:
            if assembly is None:
                raise XtransferFramingError(f"MessageData packet seq {seq} without a MessageHead")
            assembly.received += len(payload)
            if assembly.received > assembly.total:
                raise XtransferFramingError(
                    f"MessageData packets carry more than the {assembly.total} bytes announced"
                )
            assembly.pieces.append(bytes(payload))
            assembly.remaining_packets -= 1
            if assembly.remaining_packets == 0:
                if assembly.received != assembly.total:
                    raise XtransferFramingError(
                        f"message ended with {assembly.received} of the"
                        f" {assembly.total} bytes announced"
                    )
                self._assembly = None
                self._events.append(Message(b"".join(assembly.pieces)))
            return
        if assembly is not None:
            raise XtransferFramingError(
                f"{_kind_name(kind)} packet seq {seq} inside a message"
                f" ({assembly.remaining_packets} MessageData packets still expected)"
            )
        if kind == PacketType.DATA:
            self._events.append(Message(bytes(payload)))
        elif kind == PacketType.MESSAGE_HEAD:
            self._assembly = self._start_message(seq, payload)
        else:
            raise XtransferFramingError(f"unknown packet type {kind} (seq {seq})")

    def _next_seq(self) -> int:
        seq = self._send_seq
        self._send_seq = (seq + 1) & _U32
        return seq

    def _start_message(self, seq: int, payload: memoryview) -> _Assembly:
        if len(payload) != MESSAGE_HEAD_SIZE:
            raise XtransferFramingError(
                f"MessageHead seq {seq} has a {len(payload)}-byte payload"
                f" (expected {MESSAGE_HEAD_SIZE})"
            )
        total, _message_id, count, _flags = MESSAGE_HEAD.unpack(payload)
        if total > self.config.max_message_size:
            raise XtransferMessageTooLargeError(
                f"MessageHead announces a {total}-byte message; the limit is"
                f" {self.config.max_message_size} (XtransferConfig.max_message_size)"
            )
        if count == 0 or count > total or total > count * MAX_PAYLOAD:
            raise XtransferFramingError(
                f"MessageHead seq {seq}: {count} packets cannot carry {total} bytes"
            )
        return _Assembly(total=total, remaining_packets=count)

    def _on_ack(self, seq: int, payload: memoryview) -> None:
        if len(payload) != 4:
            raise XtransferFramingError(
                f"Ack seq {seq} has a {len(payload)}-byte payload (expected 4)"
            )
        acked = int.from_bytes(payload, "little")
        if self._awaiting_ack is None:
            raise XtransferFramingError(f"unexpected Ack for packet {acked}: nothing awaits one")
        expected, ticket = self._awaiting_ack
        if acked != expected:
            raise XtransferFramingError(f"Ack for packet {acked}, expected one for {expected}")
        self._awaiting_ack = None
        if ticket is not None:
            self._events.append(MessageDelivered(ticket))
        self._release()


def _kind_name(kind: int) -> str:
    try:
        return {0: "Data", 1: "MessageHead", 2: "MessageData", 3: "Ack"}[kind]
    except KeyError:
        return f"type-{kind}"
