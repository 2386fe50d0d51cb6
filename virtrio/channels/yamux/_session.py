"""The sans-I/O yamux session: bytes in, events out; operations in, bytes out.

Like h2, every operation (and every frame received that needs an answer: a ping, a refused
stream, credit returned) queues bytes, which the I/O layer takes with :meth:`data_to_send` —
so answering never requires the reader to write, and nothing here can block.

Flow control is per stream: a sender never exceeds the credit the peer granted (256 KiB to
start), and credit is returned only as the application *consumes* data
(:meth:`YamuxSession.consumed`), which is what makes a slow reader push back on its writer.

Each stream's state follows the one table in :mod:`._streams`. The core keeps the contract of
:mod:`virtrio.channels._sansio`: ``receive_data(b"")`` returns :class:`ConnectionClosed` (or
raises, when the input ended inside a frame); once the peer broke the protocol every later
``receive_data`` raises the same :class:`YamuxProtocolError`; and an operation a state forbids
raises :class:`YamuxLocalProtocolError` and sends nothing.
"""

from __future__ import annotations

import itertools
from typing import Final

import attrs

from virtrio.channels._sansio import ConnectionClosed

from ._errors import YamuxError, YamuxLocalProtocolError, YamuxProtocolError
from ._events import (
    Event,
    GoAwayReceived,
    PongReceived,
    StreamAcknowledged,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from ._frames import (
    DEFAULT_WINDOW,
    HEADER,
    HEADER_SIZE,
    VERSION,
    Flag,
    FrameType,
    GoAwayCode,
)
from ._parser import MAX_FRAME, FrameParser
from ._streams import TRANSITIONS, StreamInput, StreamState

__all__ = [
    "ConnectionClosed",
    "GoAwayReceived",
    "PongReceived",
    "StreamAcknowledged",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
    "YamuxError",
    "YamuxLocalProtocolError",
    "YamuxProtocolError",
    "YamuxSession",
]

#: Outbound streams the peer has not acknowledged yet, at most (as hashicorp and rust-yamux).
MAX_UNACKED: Final = 256
# The frame types and flags as plain ints: enum arithmetic costs microseconds per frame.
_DATA, _WINDOW_UPDATE, _PING, _GO_AWAY = (int(kind) for kind in FrameType)
_SYN, _ACK, _FIN, _RST = (int(flag) for flag in (Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST))
_SYN_SENT, _SYN_RECEIVED, _CLOSED = (
    StreamState.SYN_SENT,
    StreamState.SYN_RECEIVED,
    StreamState.CLOSED,
)


@attrs.define
class _Stream:
    send_window: int
    recv_window: int  # credit the peer still has on this stream
    window: int  # our receive window on this stream (grows when auto-tuned)
    state: StreamState
    returned: int = 0  # consumed bytes not yet given back as credit


class YamuxSession(FrameParser):
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
            raise YamuxLocalProtocolError(f"yamux window must be >= {DEFAULT_WINDOW}, got {window}")
        if max_window is not None and not window <= max_window < 2**31:
            raise YamuxLocalProtocolError(
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
        super().__init__()
        self._out = bytearray()
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
            YamuxLocalProtocolError: the peer sent GoAway, or 256 opens await acknowledgement.
        """
        if self.remote_go_away is not None:
            raise YamuxLocalProtocolError(
                f"the peer sent GoAway (code {self.remote_go_away}): no new streams"
            )
        if self._unacked >= MAX_UNACKED:
            raise YamuxLocalProtocolError(f"{MAX_UNACKED} streams await acknowledgement")
        stream_id = self._next_id
        if stream_id >= 2**32 - 2:
            raise YamuxLocalProtocolError("stream ids exhausted")
        self._next_id += 2
        self._streams[stream_id] = _Stream(DEFAULT_WINDOW, self.window, self.window, _SYN_SENT)
        self._unacked += 1
        self._frame(_WINDOW_UPDATE, _SYN, stream_id, self.window - DEFAULT_WINDOW)
        return stream_id

    def accept(self, stream_id: int) -> None:
        """The application took the inbound stream: acknowledge it (with any extra window)."""
        self._pending_accept -= 1
        stream = self._streams.get(stream_id)
        if stream is not None and stream.state.ack_owed:
            self._frame(_WINDOW_UPDATE, self._ack(stream), stream_id, self.window - DEFAULT_WINDOW)

    def send_window(self, stream_id: int) -> int:
        """Bytes that may be sent on the stream now."""
        stream = self._streams.get(stream_id)
        return stream.send_window if stream is not None and stream.state.sending else 0

    def stream_state(self, stream_id: int) -> StreamState:
        """The state of a stream (CLOSED once it is forgotten, or if it never was)."""
        stream = self._streams.get(stream_id)
        return _CLOSED if stream is None else stream.state

    def _ack(self, stream: _Stream) -> int:
        """The flags for our next frame on ``stream``: ACK if we owe it (then no longer)."""
        if stream.state.ack_owed:
            stream.state = TRANSITIONS[stream.state][StreamInput.SEND_ACK]
            return _ACK
        return 0

    def send_data(
        self, stream_id: int, data: bytes | bytearray | memoryview, head: bytes = b""
    ) -> int:
        """Queue as much of ``data`` as the stream's credit allows (split into frames of at
        most 256 KiB), after ``head`` (see :meth:`data_frames`); returns how many bytes of
        ``data`` were taken.

        Raises:
            YamuxLocalProtocolError: the stream is unknown, reset, or half-closed by us.
        """
        frames = self.data_frames(stream_id, data, head)
        out = self._out
        for frame in frames:
            out += frame
        return sum(map(len, frames[1::2]))

    def data_frames(
        self, stream_id: int, data: bytes | bytearray | memoryview, head: bytes = b""
    ) -> list[bytes | bytearray | memoryview]:
        """As :meth:`send_data`, but the frames are returned instead of queued: headers, and
        bodies as views into ``data`` (no copy), to be written at once after
        :meth:`data_to_send`. The credit is used up as if they had been queued.

        ``head``, a few bytes (a message's length prefix), goes first in the first frame's
        body, written after that frame's header rather than joined to ``data``: the peer reads
        ``head + data`` in one frame. It goes whole and with at least one byte of ``data``,
        or not at all (then nothing is taken: the credit is short).

        Raises:
            YamuxLocalProtocolError: the stream is unknown, reset, or half-closed by us.
        """
        stream = self._live(stream_id)
        if not stream.state.sending:
            raise YamuxLocalProtocolError(f"stream {stream_id} was half-closed: no more data")
        count = min(len(data), stream.send_window - len(head))
        if count <= 0:
            return []
        view = memoryview(data)
        flags = self._ack(stream) if stream.state.ack_owed else 0  # on the first
        size = min(MAX_FRAME - len(head), count)
        frames: list[bytes | bytearray | memoryview] = [
            HEADER.pack(VERSION, _DATA, flags, stream_id, size + len(head)) + head
            if head
            else HEADER.pack(VERSION, _DATA, flags, stream_id, size),
            view[:size] if size < len(view) else view,
        ]
        sent = size
        while sent < count:
            size = min(MAX_FRAME, count - sent)
            frames.append(HEADER.pack(VERSION, _DATA, 0, stream_id, size))
            frames.append(view[sent : sent + size])
            sent += size
        stream.send_window -= count + len(head)
        return frames

    def consumed(self, stream_id: int, count: int) -> None:
        """The application read ``count`` bytes of the stream: return credit once half the
        window is used up (so a slow reader throttles its writer)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.state.receiving:
            return
        stream.returned += count
        if stream.returned >= stream.window // 2:
            grow = 0
            if stream.window < self.max_window:
                unread = stream.window - stream.recv_window - stream.returned
                if unread < stream.window // 4:
                    grow = min(stream.window, self.max_window - stream.window)
                    grow = max(0, min(grow, self.max_extra - self._extra))
                    stream.window += grow
                    self._extra += grow
            stream.returned += grow
            self._frame(_WINDOW_UPDATE, self._ack(stream), stream_id, stream.returned)
            stream.recv_window += stream.returned
            stream.returned = 0

    def send_fin(self, stream_id: int) -> None:
        """Half-close: we send no more on the stream (reading goes on).

        Raises:
            YamuxLocalProtocolError: the stream is gone, or we half-closed it already.
        """
        stream = self._live(stream_id)
        if not stream.state.sending:
            raise YamuxLocalProtocolError(f"stream {stream_id} was half-closed already")
        flags = _FIN | self._ack(stream)
        self._frame(_WINDOW_UPDATE, flags, stream_id, 0)
        self._advance(stream_id, stream, StreamInput.SEND_FIN, None)

    def send_reset(self, stream_id: int) -> None:
        """Abort the stream in both directions. A stream already gone needs no abort: then
        nothing is sent."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            self._frame(_WINDOW_UPDATE, _RST, stream_id, 0)
            self._advance(stream_id, stream, StreamInput.SEND_RST, None)

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
            raise YamuxLocalProtocolError(f"stream {stream_id} is closed or was reset")
        return stream

    def _advance(
        self, stream_id: int, stream: _Stream, what: StreamInput, events: list[Event] | None
    ) -> None:
        """Move ``stream`` along :data:`._streams.TRANSITIONS` (the caller checked that its
        state allows ``what``), with what leaving a state means: an acknowledgement frees an
        open slot, CLOSED forgets the stream."""
        before = stream.state
        after = TRANSITIONS[before][what]
        stream.state = after
        if before.ack_awaited and not after.ack_awaited:
            self._unacked -= 1
            if events is not None and after is not _CLOSED:
                events.append(StreamAcknowledged(stream_id))
        if after is _CLOSED:
            del self._streams[stream_id]
            self._extra -= stream.window - self.window

    # --- input (parsed by FrameParser) -----------------------------------------------------

    def _on_go_away(self, events: list[Event], code: int) -> None:
        self.remote_go_away = code
        events.append(GoAwayReceived(code))

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
                _SYN_RECEIVED,
            )
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
        if flags & _ACK and stream.state.ack_awaited:
            self._advance(stream_id, stream, StreamInput.RECEIVE_ACK, events)
        if body:
            if not stream.state.receiving:
                raise YamuxProtocolError(
                    f"stream {stream_id}: {len(body)} bytes of data after the peer's FIN"
                )
            if len(body) > stream.recv_window:
                raise YamuxProtocolError(
                    f"stream {stream_id}: {len(body)} bytes exceed its window "
                    f"of {stream.recv_window}"
                )
            stream.recv_window -= len(body)
            events.append(StreamData(stream_id, body))
        if flags & _RST:
            self._advance(stream_id, stream, StreamInput.RECEIVE_RST, events)
            events.append(StreamReset(stream_id))
            return
        if flags & _FIN:
            if not stream.state.receiving:
                raise YamuxProtocolError(f"stream {stream_id}: a second FIN from the peer")
            self._advance(stream_id, stream, StreamInput.RECEIVE_FIN, events)
            events.append(StreamEnded(stream_id))
