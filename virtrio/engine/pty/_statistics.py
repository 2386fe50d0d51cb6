"""The daemon's counters (seed 003's metrics): :class:`PtyDaemonStatistics`."""

from __future__ import annotations

import attrs

__all__ = ["COUNTED", "Counters", "PtyDaemonStatistics"]


@attrs.frozen
class PtyDaemonStatistics:
    """A snapshot of a daemon's counters (seed 003's metrics)."""

    sessions: int  #: live sessions
    connections: int  #: clients connected now
    sessions_started: int
    connections_accepted: int
    connections_refused: int  #: clients refused over ``max_connections``
    #: yellow backpressure warnings raised (counted as a client's queue fills, sent to it
    #: with the next output it reads)
    yellow_warnings: int
    red_warnings: int  #: red backpressure warnings raised (as yellow)
    chunks_dropped: int  #: output chunks dropped for subscribers that were full, as they were
    disconnects: int  #: clients closed by the auto-disconnect policy
    bad_frames: int  #: frames answered with a protocol error


#: The counters the daemon keeps itself (the others come from its sessions and its server).
COUNTED = (
    "sessions_started",
    "yellow_warnings",
    "red_warnings",
    "chunks_dropped",
    "disconnects",
    "bad_frames",
)


class Counters:
    """The daemon's own counters, by name."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(COUNTED, 0)

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name``."""
        self._values[name] += amount

    def snapshot(
        self, *, sessions: int, connections: int, accepted: int, refused: int
    ) -> PtyDaemonStatistics:
        """Every counter now, with those kept elsewhere."""
        return PtyDaemonStatistics(
            sessions=sessions,
            connections=connections,
            connections_accepted=accepted,
            connections_refused=refused,
            **self._values,
        )
