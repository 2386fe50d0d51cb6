"""One deadline shared by several waits: a connect and the handshake after it, a wait for a
reconnect and the call that follows.

::

    deadline = Deadline.after(timeout)                  # math.inf: no deadline
    client = await supervisor.wait_connected(timeout=deadline.remaining())
    with trio.move_on_at(deadline.at):
        await client.execute(command, timeout=deadline.remaining())
"""

from __future__ import annotations

import math

import attrs
import trio

__all__ = ["Deadline"]


@attrs.frozen
class Deadline:
    """A point on Trio's clock. An infinite deadline stays infinite: :meth:`remaining` is then
    ``math.inf`` (never ``inf - now`` arithmetic a caller has to guard)."""

    #: The deadline in :func:`trio.current_time` seconds; ``math.inf`` for none.
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now (``math.inf`` for none, ``<= 0`` already past)."""
        if math.isnan(seconds):
            raise ValueError("a timeout cannot be NaN")
        if seconds == math.inf:
            return cls(math.inf)
        return cls(trio.current_time() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative; ``math.inf`` for an infinite deadline."""
        if self.at == math.inf:
            return math.inf
        return max(0.0, self.at - trio.current_time())

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed (an infinite one never does)."""
        return self.at != math.inf and trio.current_time() >= self.at
