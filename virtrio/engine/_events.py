"""The engine-wide event stream: every VM's state changes and QMP events, numbered.

Each :class:`EngineEvent` carries the VM id and a sequence number (1, 2, ... for the life of the
engine). They go through one :class:`~virtrio.primitives.Fanout` (bounded per subscriber, drops
counted) and into a bounded history, so :meth:`EventLog.wait` can look back to a sequence number
taken before the action whose event it waits for: nothing between the action and the wait is
missed, and nothing from before the mark matches.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
import trio

from virtrio.errors import VirtrioTimeoutError
from virtrio.nurseries import Fanout, MarkExpiredError, Subscription

__all__ = ["EngineEvent", "EventKind", "EventLog"]

#: What an engine event reports.
EventKind = Literal["state", "qmp", "output"]


@attrs.frozen
class EngineEvent:
    """One event of the fleet."""

    #: Position in the engine's stream (from 1).
    seq: int
    #: The VM's id.
    vm: str
    kind: EventKind
    #: The QMP event's name (``SHUTDOWN``), the new channel state (``connected``),
    #: ``exited`` (channel ``qemu``, data ``{"returncode": N}``) when a launched QEMU ended, or
    #: ``output`` (kind ``output``): one read of a line channel, data ``{"start": S, "end": E}``
    #: byte offsets as ``vm.channel(name).mark()`` counts them.
    name: str
    #: The channel (``qmp``, ``console``, ...) for state and output events.
    channel: str | None = None
    #: The QMP event's data, or ``{"error": ..., "attempt": ...}`` of a state change.
    data: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``trio.current_time()`` when the engine saw it.
    time: float = 0.0


class EventLog:
    """Numbers events, publishes them and keeps the last ``history`` of them."""

    def __init__(self, *, history: int = 65536, max_queue: int = 4096) -> None:
        self.fanout: Fanout[EngineEvent] = Fanout(max_queue=max_queue)
        self._history: collections.deque[EngineEvent] = collections.deque(maxlen=history)
        self.seq = 0
        self._arrived = trio.Event()

    def emit(
        self,
        vm: str,
        kind: EventKind,
        name: str,
        channel: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> EngineEvent:
        """Number, record and publish one event."""
        self.seq += 1
        event = EngineEvent(self.seq, vm, kind, name, channel, data or {}, trio.current_time())
        self._history.append(event)
        if not self.fanout.closed:
            self.fanout.publish(event)
        self._arrived.set()
        self._arrived = trio.Event()
        return event

    def subscribe(
        self,
        *,
        vm: str | None = None,
        kinds: Iterable[EventKind] | None = None,
        max_queue: int | None = None,
    ) -> Subscription[EngineEvent]:
        """Events from now on, of one VM and/or some kinds."""
        wanted = frozenset(kinds) if kinds is not None else None

        def accept(event: EngineEvent) -> bool:
            return (vm is None or event.vm == vm) and (wanted is None or event.kind in wanted)

        return self.fanout.subscribe(max_queue=max_queue, accept=accept)

    def since(self, after: int) -> list[EngineEvent]:
        """Recorded events with a sequence number above ``after``.

        Raises:
            MarkExpiredError: events after ``after`` were already forgotten.
        """
        if self._history and self._history[0].seq > after + 1:
            raise MarkExpiredError(
                f"engine events after #{after} fell out of the history (kept from "
                f"#{self._history[0].seq}; raise the engine's event history)"
            )
        return [e for e in self._history if e.seq > after]

    async def wait(
        self, match: Callable[[EngineEvent], bool], *, after: int | None, timeout: float, what: str
    ) -> EngineEvent:
        """The first event after ``after`` (default: now) for which ``match`` is true.

        Raises:
            VirtrioTimeoutError: none within ``timeout``.
            MarkExpiredError: ``after`` is older than the history.
        """
        start = self.seq if after is None else after
        with trio.move_on_after(timeout):
            while True:
                arrived = self._arrived
                for event in self.since(start):
                    if match(event):
                        return event
                start = max(start, self.seq)
                await arrived.wait()
        raise VirtrioTimeoutError(f"no {what} after event #{start} within {timeout:g} s")

    def close(self) -> None:
        """End every subscription."""
        self.fanout.close()
