"""The sans-I/O yamux session: bytes in, events out; operations in, bytes out.

Like h2, every operation (and every frame received that needs an answer: a ping, a refused
stream, credit returned) queues bytes, which the I/O layer takes with :meth:`data_to_send` —
so answering never requires the reader to write, and nothing here can block.

Flow control is per stream: a sender never exceeds the credit the peer granted (256 KiB to
start), and credit is returned only as the application *consumes* data
(:meth:`YamuxSession.consumed`), which is what makes a slow reader push back on its writer.
"""

from __future__ import annotations

import itertools
from typing import Final

import attrs

from virtrio.errors import LocalProtocolError, ProtocolError, VirtrioError

from ._frames import (
    DEFAULT_WINDOW,
    HEADER,
    HEADER_SIZE,
    VERSION,
    Flag,
    FrameType,
    GoAwayCode,
)

__all__ = [
    "GoAwayReceived",
    "PongReceived",
    "StreamAcknowledged",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
    "YamuxError",
    "YamuxProtocolError",
    "YamuxSession",
]

#: Outbound streams the peer has not acknowledged yet, at most (as hashicorp and rust-yamux).
MAX_UNACKED: Final = 256
#: Largest Data frame we send (rust-yamux rejects bodies over 1 MiB).
MAX_FRAME: Final = 256 * 1024
# The frame types and flags as plain ints: enum arithmetic costs microseconds per frame.
_DATA, _WINDOW_UPDATE, _PING, _GO_AWAY = (int(kind) for kind in FrameType)
_SYN, _ACK, _FIN, _RST = (int(flag) for flag in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST))
#: Data bodies this large are handed out as views into the received bytes instead of copies
#: (smaller ones are copied, so a tiny body never keeps a large receive buffer alive).
_VIEW_FROM: Final = 16 * 1024


class YamuxError(VirtrioError):
    """Base of the yamux errors (each is also one of the generic classes of
    :mod:`virtrio.errors`: a reset stream is a lost connection, not a protocol violation)."""


class YamuxProtocolError(YamuxError, ProtocolError):
    """The peer broke the yamux protocol; the session sends GoAway(protocol error) and ends."""


@attrs.frozen
class StreamOpened:
    """The peer opened stream ``stream_id`` (to be accepted)."""

    stream_id: int


@attrs.frozen
class StreamData:
    """Bytes for stream ``stream_id``; report them with :meth:`YamuxSession.consumed` once the
    application has read them. Large bodies are read-only views into the bytes received."""

    stream_id: int
    data: bytes | memoryview


@attrs.frozen
class StreamEnded:
    """The peer half-closed stream ``stream_id`` (FIN): nothing more will arrive on it."""

    stream_id: int


@attrs.frozen
class StreamReset:
    """The peer reset stream ``stream_id`` (RST): both directions are dead."""

    stream_id: int


@attrs.frozen
class StreamAcknowledged:
    """The peer acknowledged our stream ``stream_id`` (a slot for another open is free)."""

    stream_id: int


@attrs.frozen
class WindowUpdated:
    """The peer granted more credit on stream ``stream_id``: blocked writers may go on."""

    stream_id: int


@attrs.frozen
class PongReceived:
    """The answer to our ping ``opaque``."""

    opaque: int


@attrs.frozen
class GoAwayReceived:
    """The peer will accept no new streams (``code`` 0), or ends the session (other codes)."""

    code: int


Event = (
    StreamOpened
    | StreamData
    | StreamEnded
    | StreamReset
    | StreamAcknowledged
    | WindowUpdated
    | PongReceived
    | GoAwayReceived
)


@attrs.define
class _Stream:
    send_window: int
    recv_window: int  # credit the peer still has on this stream
    window: int  # our receive window on this stream (grows when auto-tuned)
    inbound: bool
    to_ack: bool = False  # we owe the peer an ACK (inbound stream, not yet acknowledged)
    acked: bool = False  # the peer acknowledged it (outbound)
    returned: int = 0  # consumed bytes not yet given back as credit
    local_fin: bool = False
    remote_fin: bool = False


class YamuxSession:
    """One end of a yamux session, without I/O.

    Args:
        client: the side that opens odd stream ids (the connecting side, by convention).
        window: the receive window per stream; above 256 KiB it is announced with each open
            and acknowledgement, as hashicorp does.
        max_window: auto-tuning: a stream's window doubles, up to this, each time its
            reader kept up but its writer ran out of credit (the window, not the reader, was
            the bottleneck). Equal to ``window``: no tuning.
        max_extra: the most all streams together may have grown beyond ``window`` (bounds
            the memory a peer can make us buffer).
        accept_backlog: inbound streams allowed to wait for :meth:`accept`; more are refused
            with RST (the session lives on).
    """

    def __init__(
        self,
        *,
        client: bool,
        window: int = DEFAULT_WINDOW,
        max_window: int | None = None,
        max_extra: int = 64 * 1024 * 1024,
        accept_backlog: int = 256,
    ) -> None:
        if window < DEFAULT_WINDOW:
            raise LocalProtocolError(f"yamux window must be >= {DEFAULT_WINDOW}, got {window}")
        if max_window is not None and not window <= max_window < 2**31:
            raise LocalProtocolError(
                f"yamux max_window must be in [window, 2**31), got {max_window}"
            )
        self.client = client
        self.window = window
        self.max_window = window if max_window is None else max_window
        self.max_extra = max_extra
        self._extra = 0  # sum over streams of (stream.window - window)
        self.accept_backlog = accept_backlog
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1 if client else 2
        self._out = bytearray()
        # the frame the last input cut short: its header, and its body so far as views
        self._head = bytearray()
        self._body: list[memoryview] = []
        self._body_size = 0
        self._pending_accept = 0
        self._unacked = 0
        self._pings = itertools.count(1)
        self._ping_waiting: set[int] = set()
        #: The peer sent GoAway: opening streams is refused.
        self.remote_go_away: int | None = None
        #: We sent GoAway: inbound opens are refused.
        self.local_go_away = False
        #: Pings of the peer's answered so far (keepalives included).
        self.pings_answered = 0
        self._answers = 0  # see answers_queued

    # --- output ---------------------------------------------------------------------------

    def data_to_send(self) -> bytearray:
        """Take everything queued for the wire (empty if nothing is)."""
        out, self._out = self._out, bytearray()
        self._answers = 0
        return out

    @property
    def bytes_queued(self) -> int:
        """Bytes waiting in :meth:`data_to_send`."""
        return len(self._out)

    @property
    def answers_queued(self) -> int:
        """Bytes of :meth:`bytes_queued` that answer the peer's frames (ping ACKs, RSTs
        refusing its opens): frames the peer makes us write just by sending, with no window to
        bound them. While they cannot leave (the peer does not read), an I/O shell stops
        feeding :meth:`receive_data`, as hashicorp bounds them by a channel."""
        return self._answers

    def _frame(self, kind: int, flags: int, stream_id: int, length: int) -> None:
        self._out += HEADER.pack(VERSION, kind, flags, stream_id, length)

    # --- streams ----------------------------------------------------------------------------

    @property
    def can_open(self) -> bool:
        """Whether :meth:`open_stream` would succeed now (fewer than 256 un-acknowledged)."""
        return self._unacked < MAX_UNACKED and self.remote_go_away is None

    def open_stream(self) -> int:
        """Open a stream; the SYN is queued at once (a server may speak first).

        Raises:
            LocalProtocolError: the peer sent GoAway, or 256 opens await acknowledgement.
        """
        if self.remote_go_away is not None:
            raise LocalProtocolError(
                f"the peer sent GoAway (code {self.remote_go_away}): no new streams"
            )
        if self._unacked >= MAX_UNACKED:
            raise LocalProtocolError(f"{MAX_UNACKED} streams await acknowledgement")
        stream_id = self._next_id
        if stream_id >= 2**32 - 2:
            raise LocalProtocolError("stream ids exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream(DEFAULT_WINDOW, self.window, self.window, inbound=False)
        self._unacked += 1
        self._frame(_WINDOW_UPDATE, _SYN, stream_id, self.window - DEFAULT_WINDOW)
        return stream_id

    def accept(self, stream_id: int) -> None:
        """The application took the inbound stream: acknowledge it (with any extra window)."""
        self._pending_accept -= 1
        stream = self._streams.get(stream_id)
        if stream is not None and stream.to_ack:
            stream.to_ack = False
            self._frame(_WINDOW_UPDATE, _ACK, stream_id, self.window - DEFAULT_WINDOW)

    def send_window(self, stream_id: int) -> int:
        """Bytes that may be sent on the stream now."""
        stream = self._streams.get(stream_id)
        return stream.send_window if stream is not None and not stream.local_fin else 0

    def send_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the stream's credit allows (split into frames of at
        most 256 KiB); returns how many bytes were taken.

        Raises:
            LocalProtocolError: the stream is unknown, reset, or half-closed by us.
        """
        frames = self.data_frames(stream_id, data)
        out = self._out
        for frame in frames:
            out += frame
        return sum(map(len, frames[1::2]))

    def data_frames(
        self, stream_id: int, data: bytes | bytearray | memoryview
    ) -> list[bytes | memoryview]:
        """As :meth:`send_data`, but the frames are returned instead of queued: headers, and
        bodies as views into ``data`` (no copy), to be written at once after
        :meth:`data_to_send`. The credit is used up as if they had been queued.

        Raises:
            LocalProtocolError: the stream is unknown, reset, or half-closed by us.
        """
        stream = self._live(stream_id)
        if stream.local_fin:
            raise LocalProtocolError(f"stream {stream_id} was half-closed: no more data")
        count = min(len(data), stream.send_window)
        view = memoryview(data)
        frames: list[bytes | memoryview] = []
        sent = 0
        while sent < count:
            size = min(MAX_FRAME, count - sent)
            flags = 0
            if stream.to_ack:
                stream.to_ack = False
                flags = _ACK
            frames.append(HEADER.pack(VERSION, _DATA, flags, stream_id, size))
            frames.append(view[sent : sent + size])
            sent += size
        stream.send_window -= count
        return frames

    def consumed(self, stream_id: int, count: int) -> None:
        """The application read ``count`` bytes of the stream: return credit once half the
        window is used up (so a slow reader throttles its writer)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_fin:
            return
        stream.returned += count
        if stream.returned >= stream.window // 2:
            grow = 0
            if stream.window < self.max_window:
                unread = stream.window - stream.recv_window - stream.returned
                if unread < stream.window // 4 and stream.recv_window < stream.window // 4:
                    grow = min(stream.window, self.max_window - stream.window)
                    grow = max(0, min(grow, self.max_extra - self._extra))
                    stream.window += grow
                    self._extra += grow
            stream.returned += grow
            flags = 0
            if stream.to_ack:
                stream.to_ack = False
                flags = _ACK
            self._frame(_WINDOW_UPDATE, flags, stream_id, stream.returned)
            stream.recv_window += stream.returned
            stream.returned = 0

    def send_fin(self, stream_id: int) -> None:
        """Half-close: we send no more on the stream (reading goes on)."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_fin:
            return
        stream.local_fin = True
        flags = _FIN
        if stream.to_ack:
            stream.to_ack = False
            flags |= _ACK
        self._frame(_WINDOW_UPDATE, flags, stream_id, 0)
        self._forget_if_done(stream_id, stream)

    def send_reset(self, stream_id: int) -> None:
        """Abort the stream in both directions."""
        if self._discard(stream_id) is not None:
            self._frame(_WINDOW_UPDATE, _RST, stream_id, 0)

    def ping(self) -> int:
        """Queue a ping; returns its opaque value (a :class:`PongReceived` carries it back)."""
        opaque = next(self._pings) & 0xFFFFFFFF
        self._ping_waiting.add(opaque)
        self._frame(_PING, _SYN, 0, opaque)
        return opaque

    def go_away(self, code: int = GoAwayCode.NORMAL) -> None:
        """Tell the peer we accept no new streams (code 0) or that the session ends."""
        self.local_go_away = True
        self._frame(_GO_AWAY, 0, 0, code)

    def _live(self, stream_id: int) -> _Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            raise LocalProtocolError(f"stream {stream_id} is closed or was reset")
        return stream

    def _forget_if_done(self, stream_id: int, stream: _Stream) -> None:
        if stream.local_fin and stream.remote_fin:
            self._discard(stream_id)

    def _discard(self, stream_id: int) -> _Stream | None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            self._extra -= stream.window - self.window
            if not stream.inbound and not stream.acked:
                self._unacked -= 1  # a stream gone before its ACK frees its open slot too
        return stream

    # --- input ------------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; returns the events they complete.

        Large Data bodies are delivered as read-only views into ``data`` (no copy): ``data``
        given as ``bytes`` is used as is, anything else is copied once first.

        Raises:
            YamuxProtocolError: the peer broke the protocol (then send GoAway(protocol error)
                from :meth:`go_away` and close).
        """
        buffer = memoryview(data if type(data) is bytes else bytes(data))
        events: list[Event] = []
        offset = self._complete_pending(buffer, events) if self._head else 0
        offset = self._parse(buffer, offset, events)
        if offset < len(buffer):
            tail = buffer[offset:]
            self._head = bytearray(tail[:HEADER_SIZE])
            self._body = [tail[HEADER_SIZE:]] if len(tail) > HEADER_SIZE else []
            self._body_size = max(0, len(tail) - HEADER_SIZE)
        return events

    def _frame_size(self, buffer: bytes | bytearray | memoryview, offset: int) -> int:
        """The whole size of the frame whose (complete) header starts at ``offset``."""
        version, kind, _, _, length = HEADER.unpack_from(buffer, offset)
        if version != VERSION:
            raise YamuxProtocolError(f"unsupported yamux version {version}")
        if kind != _DATA:
            return HEADER_SIZE
        length = int(length)
        if length > self.max_window + MAX_FRAME:
            raise YamuxProtocolError(f"Data frame of {length} bytes exceeds any window")
        return HEADER_SIZE + length

    def _complete_pending(self, buffer: memoryview, events: list[Event]) -> int:
        """Go on with the frame the previous input cut short, taking only its own bytes from
        ``buffer`` (the rest is parsed in place); returns how many were taken. Its body is
        kept as views until it is whole, then joined: copied once."""
        head = self._head
        taken = 0
        if len(head) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(head), len(buffer))
            head += buffer[:taken]
            if len(head) < HEADER_SIZE:
                return taken
        size = self._frame_size(head, 0) - HEADER_SIZE
        more = min(size - self._body_size, len(buffer) - taken)
        if more > 0:
            self._body.append(buffer[taken : taken + more])
            self._body_size += more
            taken += more
        if self._body_size == size:
            _, kind, flags, stream_id, _ = HEADER.unpack(head)
            body = b"".join(self._body)
            self._head, self._body, self._body_size = bytearray(), [], 0
            if kind == _DATA:
                self._on_stream_frame(events, flags, stream_id, body, 0)
            else:
                self._parse(memoryview(bytes(head)), 0, events)
        return taken

    def _parse(self, buffer: memoryview, offset: int, events: list[Event]) -> int:
        """Handle every complete frame from ``offset``; returns where the first incomplete
        one starts."""
        size = len(buffer)
        unpack = HEADER.unpack_from
        while size - offset >= HEADER_SIZE:
            version, kind, flags, stream_id, length = unpack(buffer, offset)
            if version != VERSION:
                raise YamuxProtocolError(f"unsupported yamux version {version}")
            if kind == _DATA:
                end = offset + HEADER_SIZE + length
                if end > size:
                    self._frame_size(buffer, offset)  # an impossible length fails at once
                    break
                body = buffer[offset + HEADER_SIZE : end]
                offset = end
                self._on_stream_frame(
                    events, flags, stream_id, body if length >= _VIEW_FROM else bytes(body), 0
                )
            else:
                offset += HEADER_SIZE
                if kind == _WINDOW_UPDATE:
                    self._on_stream_frame(events, flags, stream_id, None, length)
                elif kind == _PING:
                    self._on_ping(events, flags, length)
                elif kind == _GO_AWAY:
                    self.remote_go_away = length
                    events.append(GoAwayReceived(length))
                else:
                    raise YamuxProtocolError(f"unknown yamux frame type {kind}")
        return offset

    def _on_ping(self, events: list[Event], flags: int, opaque: int) -> None:
        if flags & _SYN:
            self._frame(_PING, _ACK, 0, opaque)
            self._answers += HEADER_SIZE
            self.pings_answered += 1
        elif flags & _ACK and opaque in self._ping_waiting:
            self._ping_waiting.discard(opaque)
            events.append(PongReceived(opaque))
        # an answer to no ping of ours is ignored (never answered)

    def _on_stream_frame(
        self,
        events: list[Event],
        flags: int,
        stream_id: int,
        body: bytes | memoryview | None,
        delta: int,
    ) -> None:
        stream = self._streams.get(stream_id)
        if flags & _SYN:
            if stream is not None:
                raise YamuxProtocolError(f"duplicate SYN for live stream {stream_id}")
            if stream_id == 0 or (stream_id % 2 == 1) == self.client:
                raise YamuxProtocolError(f"stream id {stream_id} has the wrong parity for the peer")
            if self.local_go_away or self._pending_accept >= self.accept_backlog:
                self._frame(_WINDOW_UPDATE, _RST, stream_id, 0)
                self._answers += HEADER_SIZE
                return
            stream = _Stream(
                DEFAULT_WINDOW + (delta if body is None else 0),
                self.window,
                self.window,
                inbound=True,
            )
            stream.to_ack = True
            self._streams[stream_id] = stream
            self._pending_accept += 1
            events.append(StreamOpened(stream_id))
        elif stream is None:
            return  # a frame for a stream that is gone (or never was): ignored, as everybody does
        elif body is None and delta:
            stream.send_window += delta
            if stream.send_window > 2**32 - 1:
                raise YamuxProtocolError(f"window of stream {stream_id} overflowed")
            events.append(WindowUpdated(stream_id))
        if flags & _ACK and not stream.inbound and not stream.acked:
            stream.acked = True
            self._unacked -= 1
            events.append(StreamAcknowledged(stream_id))
        if body:
            if len(body) > stream.recv_window:
                raise YamuxProtocolError(
                    f"stream {stream_id}: {len(body)} bytes exceed its window "
                    f"of {stream.recv_window}"
                )
            stream.recv_window -= len(body)
            if not stream.remote_fin:
                events.append(StreamData(stream_id, body))
        if flags & _RST:
            self._discard(stream_id)
            events.append(StreamReset(stream_id))
            return
        if flags & _FIN and not stream.remote_fin:
            stream.remote_fin = True
            events.append(StreamEnded(stream_id))
            self._forget_if_done(stream_id, stream)
