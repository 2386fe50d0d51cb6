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

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, NeedData
from virtrio.errors import LocalProtocolError

from ._codec import encode_message_parts
from ._config import DEFAULT_MAX_MESSAGE_SIZE, XtransferConfig
from ._receiving import Event, Message, MessageDelivered, PacketReceiver
from ._wire import (
    HEADER,
    MAGIC,
    MESSAGE_HEAD,
    VERSION,
    PacketType,
    XtransferFramingError,
    crc32,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "Event",
    "Message",
    "MessageDelivered",
    "NeedData",
    "XtransferConfig",
    "XtransferProtocol",
]

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


class XtransferProtocol(PacketReceiver):
    """One end of an xtransport connection, without I/O (see the module docs).

    Sending without acks frames a whole message at once (its payloads views of the message when
    it is ``bytes``, else one copy); receiving (:class:`~._receiving.PacketReceiver`) parses
    packets where they lie in the bytes read and joins a message's pieces once, so a message
    costs one copy each way.
    """

    def __init__(self, config: XtransferConfig | None = None) -> None:
        super().__init__(config if config is not None else XtransferConfig())
        self._send_seq = 0
        self._message_id = 1
        self._tickets = 0
        self._out: list[bytes | memoryview] = []
        # ack mode: packets not yet released, each with the ticket it completes (or None)
        self._pending: deque[tuple[PacketType, bytes, int | None]] = deque()
        self._awaiting_ack: tuple[int, int | None] | None = None

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

    # -- ack mode, the receiving half's hooks ------------------------------------------------

    def _acknowledge(self, seq: int) -> None:
        self._emit(PacketType.ACK, seq.to_bytes(4, "little"))

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
