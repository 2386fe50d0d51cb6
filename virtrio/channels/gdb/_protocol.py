"""The RSP client state machine (sans-I/O): what may be sent when, acks, and what each received
packet means.

The remote serial protocol has no request ids: the client sends one packet and the next packet
from the stub is its answer. So the core is in one of three states, and each received packet is
read in the light of it:

========  ==========================  ==========================================================
state     entered by                  a received packet is
========  ==========================  ==========================================================
idle      a reply, a stop reply       unexpected (a protocol error)
waiting   :meth:`send_request`,       the :class:`Reply` (``O`` console output first, for qRcmd);
          :meth:`send_requests`       after several requests, one each, in order
running   :meth:`send_resume`         ``O`` output, or the stop reply that ends the run
========  ==========================  ==========================================================

Only ``\\x03`` (:meth:`send_interrupt`) may be sent while running. In ack mode every packet
received intact is answered with ``+`` (one with a bad checksum with ``-``, and the stub sends
it again), and a ``-`` from the stub makes us send our last packet again: those bytes wait in
:meth:`data_to_send`. Requests sent together (:meth:`send_requests`, for a stub that reads its
input in order and never waits for an ack, as QEMU's system-mode stub) cannot be repaired that
way (which packet would a ``-`` ask for?), so while they are answered a ``-`` or a bad checksum
is a protocol error.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Sequence

import attrs

from virtrio.channels._jsonstream import NEED_DATA, NeedData

from ._errors import GdbLocalProtocolError, GdbProtocolError
from ._framing import (
    DEFAULT_MAX_PACKET,
    Ack,
    Nak,
    Notification,
    Packet,
    PacketReader,
    _BadChecksum,
    encode_packet,
    plain_packet,
)
from ._replies import ConsoleOutput, GdbEvent, StopReply, parse_stop_reply

__all__ = ["GdbProtocol", "ProtocolState", "Reply", "ResumeRefused"]

#: Retransmissions of one packet before giving up (a link that garbles every copy is broken).
MAX_RETRANSMITS = 5
#: Requests up to this long are kept framed, up to this many (then the cache starts over).
_CACHED_PAYLOAD = 64
_CACHED_PACKETS = 256


class ProtocolState(enum.Enum):
    """Where the exchange is (see the module docstring's table)."""

    IDLE = "idle"
    WAITING = "waiting"
    RUNNING = "running"


@attrs.frozen
class Reply:
    """The stub's answer to the request in flight (its decoded payload; ``b""`` means the stub
    does not support the request)."""

    payload: bytes


@attrs.frozen
class ResumeRefused:
    """The stub answered a resume with an error or the empty reply: the target did not run."""

    payload: bytes


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _is_output(payload: bytes) -> bool:
    body = payload[1:]
    return payload[:1] == b"O" and bool(body) and len(body) % 2 == 0 and _HEX.issuperset(body)


def _is_stop(payload: bytes) -> bool:
    return (
        payload[:1] in (b"T", b"S", b"W", b"X")
        and len(payload) >= 3
        and _HEX.issuperset(payload[1:3])
    )


class GdbProtocol:
    """One client connection's protocol state; feed it bytes, take events and bytes to send.

    Args:
        max_packet: the largest packet accepted from the stub.
    """

    def __init__(self, *, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._reader = PacketReader(max_packet=max_packet)
        self._state = ProtocolState.IDLE
        self._ack_mode = True
        self._outgoing = bytearray()
        self._last_sent = b""
        self._retransmits = 0
        self._command = b""
        self._queued: collections.deque[bytes] = collections.deque()  # sent after _command
        self._pipelined = False  # the packets in flight went out together: no retransmits
        self._events: collections.deque[Reply | ResumeRefused | GdbEvent] = collections.deque()
        self._eof = False
        # short requests framed before (g, p10, Z0,...): framing them again is most of _send
        self._encoded: dict[bytes, bytes] = {}
        # QEMU greets a new client with the stop reply of a target it halts for it (T02) when
        # the previous client left it running, before or after our first request: until the
        # first reply, one stop reply is taken as that
        self._greeting_stop_allowed = True

    @property
    def state(self) -> ProtocolState:
        """The current state."""
        return self._state

    @property
    def ack_mode(self) -> bool:
        """True until :meth:`end_ack_mode` (after the stub accepted ``QStartNoAckMode``)."""
        return self._ack_mode

    @property
    def command(self) -> bytes:
        """The request (or resume) in flight, or the last one."""
        return self._command

    def _send(self, payload: bytes, state: ProtocolState) -> bytes:
        if self._eof:
            raise GdbLocalProtocolError("the connection to the stub is closed")
        if self._state is not ProtocolState.IDLE:
            what = (
                "the target is running"
                if self._state is ProtocolState.RUNNING
                else (f"request {self._command[:32]!r} is still waiting for its reply")
            )
            raise GdbLocalProtocolError(f"cannot send {payload[:32]!r}: {what}")
        data = self._encoded.get(payload) if type(payload) is bytes else None
        if data is None:
            data = encode_packet(payload)
            if type(payload) is bytes and len(payload) <= _CACHED_PAYLOAD:
                if len(self._encoded) >= _CACHED_PACKETS:
                    self._encoded.clear()
                self._encoded[payload] = data
        self._command = payload
        self._state = state
        self._last_sent = data if self._ack_mode else b""
        self._retransmits = 0
        self._pipelined = False
        return data

    def _next_request(self) -> None:
        """The request in flight was answered: the next one sent with it is, or none (idle)."""
        if self._queued:
            self._command = self._queued.popleft()
        else:
            self._state = ProtocolState.IDLE

    def send_request(self, payload: bytes) -> bytes:
        """Encode a request whose answer is a :class:`Reply`; returns the bytes to write.

        Raises:
            GdbLocalProtocolError: a request is in flight or the target is running.
            ValueError: the payload holds an unescaped ``$`` or ``#``.
        """
        return self._send(payload, ProtocolState.WAITING)

    def send_requests(self, payloads: Sequence[bytes]) -> bytes:
        """Encode requests to be written together, each answered by a :class:`Reply`, in
        order; returns the bytes to write. Only for a stub that reads its input in order and
        answers each packet before the next without waiting for our ack (QEMU's system-mode
        stub): a stub that waits for the ``+`` of its reply before reading on (gdbserver) would
        take the next packet for a garbled ack.

        Raises:
            GdbLocalProtocolError: a request is in flight, the target is running, or no reply
                has come yet (the handshake's first request is answered alone).
            ValueError: no payloads, or one holds an unescaped ``$`` or ``#``.
        """
        if not payloads:
            raise ValueError("send_requests needs at least one payload")
        if len(payloads) > 1 and self._greeting_stop_allowed:
            raise GdbLocalProtocolError("requests go out together only after the first reply")
        rest = [encode_packet(payload) for payload in payloads[1:]]
        data = self._send(payloads[0], ProtocolState.WAITING)
        if rest:
            self._queued.extend(payloads[1:])
            self._pipelined = True
            self._last_sent = b""
        return data + b"".join(rest) if rest else data

    def send_resume(self, payload: bytes) -> bytes:
        """Encode ``c``, ``s``, ``vCont;...`` and the like, answered by a stop reply whenever
        the target stops; returns the bytes to write.

        Raises:
            GdbLocalProtocolError: a request is in flight or the target already runs.
        """
        return self._send(payload, ProtocolState.RUNNING)

    def send_interrupt(self) -> bytes:
        """The interrupt byte (``\\x03``): the stub stops the target and sends a stop reply.

        Raises:
            GdbLocalProtocolError: the target is not running.
        """
        if self._state is not ProtocolState.RUNNING:
            raise GdbLocalProtocolError(
                f"cannot interrupt: the target is not running ({self._state.value})"
            )
        return b"\x03"

    def end_ack_mode(self) -> None:
        """Stop sending and expecting acks (call once the stub answered ``QStartNoAckMode``
        with ``OK``)."""
        self._ack_mode = False
        self._last_sent = b""

    @property
    def owes_data(self) -> bool:
        """True while :meth:`data_to_send` has bytes for the stub."""
        return bool(self._outgoing)

    def data_to_send(self) -> bytes:
        """Acks and retransmissions owed to the stub (send them before anything else)."""
        if not self._outgoing:
            return b""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def keep_unsent(self, data: bytes) -> None:
        """Put back the start of :meth:`data_to_send`'s bytes that could not be written yet:
        ``data``, what was not (it goes out first next time)."""
        self._outgoing[:0] = data

    def take_reply(self, data: bytes) -> bytes | None:
        """The fast path for the usual case: while a request waits and nothing is buffered,
        ``data`` (one read) is an optional ``+`` and the whole reply, a plain packet. Then its
        payload is returned with everything done that :meth:`receive_data` and
        :meth:`next_event` would do (the state is idle again, the ack is owed in
        :meth:`data_to_send`); otherwise None, nothing is changed, and ``data`` goes the
        general way."""
        if (
            self._state is not ProtocolState.WAITING
            or self._greeting_stop_allowed
            or self._reader.buffered
            or self._eof
        ):
            return None
        acked = data[:1] == b"+"
        payload = plain_packet(data, acked)
        if payload is None or (self._command.startswith(b"qRcmd,") and _is_output(payload)):
            return None
        self._took_whole(acked)
        return payload

    def take_ack(self, data: bytes) -> bool:
        """The fast paths' other half: with nothing buffered, ``data`` (one read) is the stub's
        lone ``+`` (for the request or resume in flight). Then it is taken as
        :meth:`receive_data` and :meth:`next_event` would take it, and True is returned;
        otherwise False, and nothing is changed."""
        if data != b"+" or self._reader.buffered or self._eof:
            return False
        self._last_sent = b""
        return True

    def take_stop(self, data: bytes) -> StopReply | None:
        """:meth:`take_reply` for a running target: ``data`` (one read) is an optional ``+``
        and the whole stop reply, a plain packet. Then the stop is returned with everything
        done that :meth:`receive_data` and :meth:`next_event` would do (the state is idle
        again, the ack is owed in :meth:`data_to_send`); otherwise None, nothing is changed,
        and ``data`` goes the general way (which also raises for a malformed stop reply)."""
        if self._state is not ProtocolState.RUNNING or self._reader.buffered or self._eof:
            return None
        acked = data[:1] == b"+"
        payload = plain_packet(data, acked)
        if payload is None or not _is_stop(payload):
            return None
        try:
            stop = parse_stop_reply(payload)
        except GdbProtocolError:
            return None
        self._took_whole(acked)
        return stop

    def _took_whole(self, acked: bool) -> None:
        """A fast path took a whole reply (after the stub's ``+`` if ``acked``): what
        :meth:`receive_data` and :meth:`next_event` would have done with it."""
        if acked:
            self._last_sent = b""
        if self._ack_mode:
            self._outgoing += b"+"
        self._next_request()

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed received bytes; ``b""`` means the stub closed the connection.

        Raises:
            GdbProtocolError: bytes after the end of the stream.
        """
        if self._eof:
            if data:
                raise GdbProtocolError("data after the end of the stream")
            return
        if not data:
            self._eof = True
            return
        self._reader.receive_data(data)

    def next_event(self) -> Reply | ResumeRefused | GdbEvent | NeedData:
        """The next :class:`Reply`, :class:`ResumeRefused`, stop reply (:class:`Stopped`,
        :class:`Exited`, :class:`Terminated`) or :class:`ConsoleOutput`; ``NEED_DATA`` when
        none is complete.

        Raises:
            GdbProtocolError: the stub broke the protocol; the connection must be closed.
        """
        while not self._events:
            frame = self._reader.next_frame()
            if frame is None:
                return NEED_DATA
            self._on_frame(frame)
        return self._events.popleft()

    def _on_frame(self, frame: object) -> None:
        if isinstance(frame, Packet):
            if self._ack_mode:
                self._outgoing += b"+"
            self._on_packet(frame.payload)
        elif isinstance(frame, Ack):
            self._last_sent = b""
        elif isinstance(frame, Nak):
            if self._pipelined and self._state is ProtocolState.WAITING:
                raise GdbProtocolError(
                    f"the stub refused one of the packets sent together with {self._command[:32]!r}"
                )
            if self._last_sent:
                self._retransmits += 1
                if self._retransmits > MAX_RETRANSMITS:
                    raise GdbProtocolError(
                        f"the stub refused {self._command[:32]!r} {MAX_RETRANSMITS} times"
                    )
                self._outgoing += self._last_sent
        elif isinstance(frame, _BadChecksum):
            pipelined = self._pipelined and self._state is ProtocolState.WAITING
            if not self._ack_mode or pipelined:
                where = "a reply to packets sent together" if pipelined else "no-ack mode"
                raise GdbProtocolError(
                    f"bad checksum {frame.expected:02x} (computed {frame.actual:02x}) in "
                    f"{where}, packet {frame.raw[:64]!r}"
                )
            self._outgoing += b"-"
        elif isinstance(frame, Notification):
            # non-stop mode is never requested, so a stub that sends one is confused
            raise GdbProtocolError(f"unexpected notification {frame.payload[:64]!r}")

    def _on_packet(self, payload: bytes) -> None:
        state = self._state
        if state is ProtocolState.WAITING:
            if self._command.startswith(b"qRcmd,") and _is_output(payload):
                self._events.append(ConsoleOutput(bytes.fromhex(payload[1:].decode())))
                return
            if self._greeting_stop_allowed and self._command != b"?" and _is_stop(payload):
                self._greeting_stop_allowed = False
                self._events.append(parse_stop_reply(payload))
                return
            self._greeting_stop_allowed = False
            self._next_request()
            self._events.append(Reply(payload))
        elif state is ProtocolState.RUNNING:
            if _is_output(payload):
                self._events.append(ConsoleOutput(bytes.fromhex(payload[1:].decode())))
                return
            if payload[:1] == b"E" or payload == b"":
                # the resume itself was refused (or is unsupported): the target did not run
                self._state = ProtocolState.IDLE
                self._events.append(ResumeRefused(payload))
                return
            event = parse_stop_reply(payload)
            self._state = ProtocolState.IDLE
            self._events.append(event)
        elif self._greeting_stop_allowed and _is_stop(payload):
            self._greeting_stop_allowed = False
            self._events.append(parse_stop_reply(payload))
        else:
            raise GdbProtocolError(f"unexpected packet {payload[:64]!r} with no request pending")
