"""The receiving half of an xtransport connection: bytes in, events out.

:class:`PacketReceiver` parses packets where they lie in the bytes read (a payload is a view of
them, never a copy; one shorter than ``_VIEW_MIN`` is copied) and joins a message's pieces
once. Without acks, the MessageData packets of a message are taken in a tight loop
(:func:`~._loops.parse_pieces`, in C when built); anything unusual goes through the general
path, which names the fault. :class:`~._protocol.XtransferProtocol` adds the sending half and
ack mode (the ``_acknowledge`` and ``_on_ack`` hooks).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import attrs

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData

from ._config import XtransferConfig
from ._loops import parse_pieces
from ._wire import (
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
    header_error,
)

__all__ = ["Event", "Message", "MessageDelivered", "PacketReceiver"]

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


class PacketReceiver:
    """The receiving state of one end (see the module); subclassed by
    :class:`~._protocol.XtransferProtocol`."""

    def __init__(self, config: XtransferConfig) -> None:
        self.config = config
        self._partial: _Partial | None = None
        self._assembly: _Assembly | None = None
        self._events: deque[Event] = deque()
        self._error = ErrorState()
        self._eof = False

    def _acknowledge(self, seq: int) -> None:
        """Ack mode: answer packet ``seq`` with an Ack (the sending half does)."""
        raise NotImplementedError

    def _on_ack(self, seq: int, payload: memoryview) -> None:
        """An Ack packet arrived (the sending half takes it)."""
        raise NotImplementedError

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
        ``offset`` on (:func:`~._loops.parse_pieces`); returns where it stopped (at the end of
        the message, of the whole packets, or at a packet :meth:`_parse` must look at, which
        names its fault)."""
        offset, taken, received = parse_pieces(
            data, view, offset, assembly.remaining_packets, _VIEW_MIN, crc32, assembly.pieces
        )
        # too many bytes is found here, once per read: what it appended views ``data`` only
        assembly.received += received
        assembly.remaining_packets -= taken
        if assembly.received > assembly.total or not assembly.remaining_packets:
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
                self._acknowledge(seq)
        else:
            self._on_packet(kind, seq, memoryview(b"".join(partial.pieces)))
        return offset

    def _on_packet(self, kind: int, seq: int, payload: memoryview) -> None:
        if kind == PacketType.ACK:
            self._on_ack(seq, payload)
            return
        self._accept(kind, seq, payload)
        if self.config.ack:
            self._acknowledge(seq)

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


def _kind_name(kind: int) -> str:
    try:
        return {0: "Data", 1: "MessageHead", 2: "MessageData", 3: "Ack"}[kind]
    except KeyError:
        return f"type-{kind}"
