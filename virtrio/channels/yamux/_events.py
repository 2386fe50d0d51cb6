"""The events a yamux session core reports (:meth:`YamuxSession.receive_data` returns them)."""

from __future__ import annotations

import attrs

from virtrio.channels._sansio import ConnectionClosed

__all__ = [
    "ConnectionClosed",
    "Event",
    "GoAwayReceived",
    "PongReceived",
    "StreamAcknowledged",
    "StreamData",
    "StreamEnded",
    "StreamOpened",
    "StreamReset",
    "WindowUpdated",
]


@attrs.frozen
class StreamOpened:
    """The peer opened stream ``stream_id`` (to be accepted)."""

    stream_id: int


@attrs.frozen
class StreamData:
    """Bytes for stream ``stream_id``; report them with ``YamuxSession.consumed`` once the
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
    | ConnectionClosed
)
