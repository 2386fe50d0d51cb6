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
from collections.abc import Sequence

import attrs

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData
from virtrio.errors import LocalProtocolError

from ._config import DEFAULT_MAX_MESSAGE_SIZE, XtransferConfig
from ._wire import (
    DATA_HEADER,
    DATA_PREFIX,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    MAX_PAYLOAD,
    MESSAGE_HEAD,
    MESSAGE_HEAD_SIZE,
    VERSION,
    PacketType,
    XtransferError,
    XtransferFramingError,
    XtransferMessageTooLargeError,
    XtransferTruncatedError,
    checksum_error,
    crc32,
    encode_message_parts,
    header_error,
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

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
_MESSAGE_DATA = int(PacketType.MESSAGE_DATA)  # a plain int compares faster in the hot loop


@attrs.frozen
class Message:
    """A complete message from the peer."""

    data: bytes


@attrs.frozen
class MessageDelivered:
    """Ack mode: the peer acknowledged the last packet of the message with this ticket."""

    ticket: int


Event = Message | MessageDelivered | ConnectionClosed


#: A MessageData payload shorter than this is copied out of the received bytes; a longer one
#: is kept as a view of them. A memoryview and the packet's header cost ~200 bytes, so a peer
#: sending the smallest viewed pieces makes a message take at most ~1.4 times its size (virga's
#: 1008-byte payloads, 1.2 times).
_VIEW_MIN = 512


@attrs.define
class _Assembly:
    """A multi-packet message being received: views of its pieces, joined once at the end."""

    total: int
    remaining_packets: int
    pieces: list[bytes | memoryview] = attrs.Factory(list)
    received: int = 0


@attrs.define
class _Partial:
    """A packet cut by the end of a read: its header once all 16 bytes came, and views of the
    payload bytes received so far."""

    head: bytearray = attrs.Factory(bytearray)
    #: (type, seq, length, crc) once the header is complete
    fields: tuple[int, int, int, int] | None = None
    pieces: list[memoryview] = attrs.Factory(list)
    received: int = 0

    @property
    def size(self) -> int:
        """Bytes of the packet received so far."""
        return len(self.head) if self.fields is None else HEADER_SIZE + self.received


class XtransferProtocol:
    """One end of an xtransport connection, without I/O (see the module docs).

    Sending without acks frames a whole message at once (its payloads views of the message when
    it is ``bytes``, else one copy); receiving parses
    packets where they lie in the bytes read (a payload is a view of them, never a copy) and
    joins a message's pieces once, so a message costs one copy each way.
    """

    def __init__(self, config: XtransferConfig | None = None) -> None:
        self.config = config if config is not None else XtransferConfig()
        self._send_seq = 0
        self._message_id = 1
        self._tickets = 0
        self._out: list[bytes | memoryview] = []
        # ack mode: packets not yet released, each with the ticket it completes (or None)
        self._pending: deque[tuple[PacketType, bytes, int | None]] = deque()
        self._awaiting_ack: tuple[int, int | None] | None = None
        self._partial: _Partial | None = None
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
        view = memoryview(data).cast("B")
        size, payload = len(view), self.config.max_payload
        count = -(-size // payload) if size > payload else 0
        if count > _U32:
            raise LocalProtocolError(f"a {size}-byte message needs more than 2**32-1 packets")
        self._tickets += 1
        if self.config.ack:
            self._queue_acked(view, count, self._tickets)
        else:
            parts = encode_message_parts(view, payload, self._send_seq, self._message_id)
            if type(data) is bytes:  # immutable: its payloads go out as views of it
                self._out += parts
            else:  # joined at once, so ``data`` may change afterwards
                self._out.append(b"".join(parts))
            self._send_seq = (self._send_seq + 1 + count) & _U32
        if count:
            self._message_id = (self._message_id + 1) & _U64
        return self._tickets

    def _queue_acked(self, view: memoryview, count: int, ticket: int) -> None:
        """Ack mode: the packets wait, copied, to go out one per Ack."""
        pending = self._pending
        if not count:
            pending.append((PacketType.DATA, bytes(view), ticket))
        else:
            head = MESSAGE_HEAD.pack(len(view), self._message_id, count, 0)
            pending.append((PacketType.MESSAGE_HEAD, head, None))
            payload = self.config.max_payload
            for index in range(count):
                piece = bytes(view[index * payload : (index + 1) * payload])
                last = index == count - 1
                pending.append((PacketType.MESSAGE_DATA, piece, ticket if last else None))
        self._release()

    def _emit(self, kind: PacketType, payload: bytes) -> int:
        seq = self._send_seq
        self._send_seq = (seq + 1) & _U32
        # header and payload joined once, in data_to_send
        self._out += (HEADER.pack(MAGIC, VERSION, kind, seq, len(payload), crc32(payload)), payload)
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

    def buffers_to_send(self) -> list[bytes | memoryview]:
        """:meth:`data_to_send` as the buffers to write one after the other (a gathering
        write, ``os.writev`` or ``socket.sendmsg``, takes them without a join); empty if none.
        A payload of a message given as ``bytes`` is a view of it."""
        out, self._out = self._out, []
        return out

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
            if self._partial is not None or self._assembly is not None:
                self._fail(
                    XtransferTruncatedError(
                        f"the stream ended inside a {'message' if self._assembly else 'packet'}"
                        f" ({self._describe_partial()})"
                    )
                )
            else:
                self._events.append(ConnectionClosed())
            return
        # payloads stay views of these bytes until their message is joined: they must not change
        data = data if type(data) is bytes else bytes(data)
        try:
            with memoryview(data) as view:
                offset = self._resume(view) if self._partial is not None else 0
                if offset < len(data):
                    self._parse(data, view, offset)
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
        self._partial = None
        self._assembly = None

    def _describe_partial(self) -> str:
        if self._assembly is not None:
            return f"{self._assembly.received} of {self._assembly.total} bytes"
        assert self._partial is not None
        return f"{self._partial.size} bytes of a packet"

    def _parse(self, data: bytes, view: memoryview, offset: int) -> None:
        """Every whole packet of ``data`` from ``offset`` on, where it lies; a packet the end
        cuts becomes the partial one."""
        size, unpack, ack = len(data), HEADER.unpack_from, self.config.ack
        while size - offset >= HEADER_SIZE:
            if self._assembly is not None and not ack:
                offset = self._parse_pieces(data, view, offset, self._assembly)
                if size - offset < HEADER_SIZE:
                    break
            magic, version, kind, seq, length, crc = unpack(data, offset)
            if magic != MAGIC or version != VERSION:
                raise header_error(magic, version, data[offset : offset + 4])
            start = offset + HEADER_SIZE
            offset = start + length
            if offset > size:
                self._partial = _Partial(
                    fields=(kind, seq, length, crc), pieces=[view[start:]], received=size - start
                )
                return
            payload = view[start:offset]
            if crc32(payload) != crc:
                raise checksum_error(seq, crc, length, crc32(payload))
            self._on_packet(kind, seq, payload)
        if offset < size:
            self._partial = _Partial(head=bytearray(view[offset:]))

    def _parse_pieces(self, data: bytes, view: memoryview, offset: int, assembly: _Assembly) -> int:
        """The hot path (no acks): the whole MessageData packets of ``assembly`` from
        ``offset`` on, its counters kept in locals; returns where it stopped (at the end of
        the message, of the whole packets, or at a packet :meth:`_parse` must look at).

        A header is checked by comparing its magic, version and type at once with a
        MessageData header's; any other header goes back to :meth:`_parse`, which names its
        fault."""
        unpack, prefix, check = DATA_HEADER.unpack_from, DATA_PREFIX, crc32
        size, last, view_min = len(data), len(data) - HEADER_SIZE, _VIEW_MIN
        pieces = assembly.pieces
        append, before, received = pieces.append, len(pieces), assembly.received
        for _ in range(assembly.remaining_packets):  # (the loop counts them for us)
            if offset > last:
                break
            start_of_header, seq, length, crc = unpack(data, offset)
            start = offset + HEADER_SIZE
            end = start + length
            if start_of_header != prefix or end > size:
                break  # _parse reports the fault, or keeps the partial packet
            payload = view[start:end]
            if check(payload) != crc:
                raise checksum_error(seq, crc, length, check(payload))
            received += length
            append(payload if length >= view_min else bytes(payload))
            offset = end
        # too many bytes is found here, once per read: what it appended views ``data`` only
        assembly.received = received
        assembly.remaining_packets -= len(pieces) - before
        if received > assembly.total or not assembly.remaining_packets:
            self._check_assembly(assembly)
        return offset

    def _resume(self, view: memoryview) -> int:
        """Go on with the partial packet; returns how many bytes of ``view`` it took."""
        partial = self._partial
        assert partial is not None
        offset = 0
        if partial.fields is None:
            offset = HEADER_SIZE - len(partial.head)
            partial.head += view[:offset]
            if len(partial.head) < HEADER_SIZE:
                return len(view)
            magic, version, kind, seq, length, crc = HEADER.unpack(partial.head)
            if magic != MAGIC or version != VERSION:
                raise header_error(magic, version, bytes(partial.head))
            partial.fields = (kind, seq, length, crc)
        kind, seq, length, crc = partial.fields
        piece = view[offset : offset + length - partial.received]
        if piece:
            partial.pieces.append(piece)
            partial.received += len(piece)
            offset += len(piece)
        if partial.received < length:
            return offset
        self._partial = None
        actual = 0
        for piece in partial.pieces:
            actual = crc32(piece, actual)
        if actual != crc:
            raise checksum_error(seq, crc, length, actual)
        assembly = self._assembly
        if kind == _MESSAGE_DATA and assembly is not None and length >= _VIEW_MIN:
            self._add_pieces(assembly, partial.pieces, length)  # views, no copy
            if self.config.ack:
                self._emit(PacketType.ACK, seq.to_bytes(4, "little"))
        else:
            self._on_packet(kind, seq, memoryview(b"".join(partial.pieces)))
        return offset

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
            piece = payload if len(payload) >= _VIEW_MIN else bytes(payload)
            self._add_pieces(assembly, [piece], len(payload))
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

    def _add_pieces(
        self, assembly: _Assembly, pieces: Sequence[bytes | memoryview], length: int
    ) -> None:
        """One MessageData packet's payload (in one or more pieces) joins its message."""
        assembly.received += length
        assembly.pieces += pieces
        assembly.remaining_packets -= 1
        self._check_assembly(assembly)

    def _check_assembly(self, assembly: _Assembly) -> None:
        """After a piece: an error if the message is too long, the message if it is done."""
        if assembly.received > assembly.total:
            raise XtransferFramingError(
                f"MessageData packets carry more than the {assembly.total} bytes announced"
            )
        if assembly.remaining_packets == 0:
            if assembly.received != assembly.total:
                raise XtransferFramingError(
                    f"message ended with {assembly.received} of the"
                    f" {assembly.total} bytes announced"
                )
            self._assembly = None
            self._events.append(Message(b"".join(assembly.pieces)))

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
