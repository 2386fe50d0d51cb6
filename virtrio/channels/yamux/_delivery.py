"""What a yamux session does with the frames it reads: :func:`deliver`, its ``_handle``.

Whoever reads the input (the session's reader task, or a stream's reader holding the turn:
:mod:`._inbound`) hands the bytes here: the sans-I/O core parses them, and each event goes to
its stream (data, credit, the end, a reset), to the accept queue, or to the session (pings,
acknowledgements, GoAway); the answers the core queued leave at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from virtrio.errors import ConnectionLostError

from ._frames import GoAwayCode
from ._session import (
    GoAwayReceived,
    PongReceived,
    StreamAcknowledged,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from ._stream import MuxStream, StreamResetError

if TYPE_CHECKING:
    from ._trio import MuxSession

__all__ = ["deliver"]


def deliver(self: MuxSession, data: bytes | bytearray) -> None:
    """Feed bytes read to the core and deliver its events."""
    core = self._core
    for event in core.receive_data(data):
        if isinstance(event, StreamData):
            stream = self._streams.get(event.stream_id)
            if stream is None:
                pass
            elif stream._closed:
                # data for a stream we closed: refuse it, as TCP does, so the peer's
                # writer fails instead of waiting forever for credit
                core.send_reset(event.stream_id)
                del self._streams[event.stream_id]
            else:
                stream._feed(event.data)
        elif isinstance(event, WindowUpdated):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._window()
        elif isinstance(event, StreamOpened):
            stream = MuxStream(self, event.stream_id)
            self._streams[event.stream_id] = stream
            self._accept_queue.append(stream)
            self._acceptable.set()
        elif isinstance(event, StreamEnded):
            if (stream := self._streams.get(event.stream_id)) is not None:
                stream._end()
                if stream._closed:
                    del self._streams[event.stream_id]
                    self._can_open.set()  # closed both ways: its open slot may be free
        elif isinstance(event, StreamReset):
            if (stream := self._streams.pop(event.stream_id, None)) is not None:
                stream._broken(StreamResetError("reset by the peer"))
            self._can_open.set()  # an unacknowledged stream's open slot may be free
        elif isinstance(event, StreamAcknowledged):
            self._can_open.set()
        elif isinstance(event, PongReceived):
            if (answered := self._pongs.get(event.opaque)) is not None:
                answered.set()
        elif isinstance(event, GoAwayReceived):
            self._can_open.set()
            if event.code != GoAwayCode.NORMAL:
                raise ConnectionLostError(
                    f"yamux session {self.name}: the peer ended it (GoAway code {event.code})"
                )
    if core.bytes_queued:
        self._flush()
