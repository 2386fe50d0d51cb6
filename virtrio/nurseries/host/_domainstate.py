"""The state of a libvirt domain's QMP monitor or guest agent, as a VM channel state.

A libvirt VM's ``vm.qmp.state`` is not its host connection's: QMP is CONNECTED only while the
host is connected and the domain runs (its monitor reachable, paused included); QGA only while
libvirt reports the guest agent connected. Event-driven: the host's state changes, the domain's
lifecycle events and its agent-lifecycle events; on every (re)connect of the host one query
(the domain's state, or its agent channel's state in the live XML) sets the starting point.
"""

from __future__ import annotations

from typing import Literal

import trio

from virtrio.channels.libvirt import EventKind
from virtrio.errors import ChannelUnavailableError, VirtrioError
from virtrio.primitives import ChannelState, Deadline, Fanout, StateChange, Subscription

from ._host import AGENT_CHANNEL, HostNursery

__all__ = ["DomainChannelState"]

_RUNNING = frozenset({"running", "paused", "blocked", "pmsuspended"})
_DOWN_EVENTS = frozenset({"STOPPED", "CRASHED", "UNDEFINED"})


class DomainChannelState:
    """Tracks one channel (``qmp`` or ``qga``) of the domain ``domain`` on ``host`` and
    publishes its changes as :class:`~virtrio.primitives.StateChange` named ``channel`` into
    ``states``. Run :meth:`run` in the VM nursery."""

    def __init__(
        self,
        host: HostNursery,
        domain: str,
        role: Literal["qmp", "qga"],
        channel: str,
        states: Fanout[StateChange],
    ) -> None:
        self._host = host
        self._domain = domain
        self._role = role
        #: the channel's name in state changes (``VM/CHANNEL``)
        self.channel = channel
        self._states = states
        self._state = ChannelState.CONNECTING
        self._changed = trio.Event()
        self._generation = 0

    @property
    def state(self) -> ChannelState:
        """The channel's state now."""
        return self._state

    def subscribe(self, *, max_queue: int = 256) -> Subscription[StateChange]:
        """This channel's state changes."""
        name = self.channel
        return self._states.subscribe(max_queue=max_queue, accept=lambda c: c.channel == name)

    def _set(self, state: ChannelState, error: BaseException | None = None) -> None:
        self._generation += 1
        if state is self._state:
            return
        self._state = state
        self._states.publish(StateChange(self.channel, state, error))
        self._changed.set()
        self._changed = trio.Event()

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the channel is CONNECTED (no polling: woken by each change).

        Raises:
            ChannelUnavailableError: not connected by the deadline.
        """
        deadline = Deadline.after(timeout)
        with trio.move_on_at(deadline.at):
            while self._state is not ChannelState.CONNECTED:
                if self._state is ChannelState.FAILED:
                    break
                await self._changed.wait()
            else:
                return
        what = "monitor" if self._role == "qmp" else "guest agent"
        raise ChannelUnavailableError(
            f"{what} of {self._domain} not connected after {timeout:g} s ({self._state.value})"
        )

    async def _refresh(self) -> None:
        """One query for the starting point after the host (re)connected; an event that came
        meanwhile wins over the query's older answer."""
        generation = self._generation
        domain = self._host.domain(self._domain)
        try:
            if self._role == "qmp":
                up = await domain.state() in _RUNNING
            else:
                xml = await domain.xml()
                try:
                    up = xml.channel(AGENT_CHANNEL).state == "connected"
                except KeyError:
                    up = False
        except VirtrioError:
            up = False  # not defined, not running, or the host went again
        if generation == self._generation and self._host.is_connected:
            self._set(ChannelState.CONNECTED if up else ChannelState.DISCONNECTED)

    def _on_event(self, kind: EventKind, event: str) -> None:
        if not self._host.is_connected:
            return
        if event in _DOWN_EVENTS:
            self._set(ChannelState.DISCONNECTED)
        elif self._role == "qmp" and kind is EventKind.LIFECYCLE and event == "STARTED":
            self._set(ChannelState.CONNECTED)
        elif self._role == "qga" and kind is EventKind.AGENT_LIFECYCLE:
            up = event == "CONNECTED"
            self._set(ChannelState.CONNECTED if up else ChannelState.DISCONNECTED)

    async def _follow_host(self, changes: Subscription[StateChange]) -> None:
        name = str(self._host.uri)
        if self._host.is_connected:
            await self._refresh()
        # receive(), not async for: a cancel during a refresh would leave the subscription's
        # generator suspended, for the garbage collector to warn about
        while True:
            change = await changes.receive()
            if change.channel != name:
                continue
            if change.state is ChannelState.CONNECTED:
                await self._refresh()
            else:
                self._set(change.state, change.error)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the host and the domain until cancelled."""
        kinds = (EventKind.LIFECYCLE, EventKind.AGENT_LIFECYCLE)
        try:
            with (
                self._host.state_changes() as changes,
                self._host.events(kinds, domain=self._domain) as events,
            ):
                if not self._host.is_connected:
                    self._set(self._host.state)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._follow_host, changes)
                    task_status.started()
                    try:
                        while True:
                            event = await events.receive()
                            self._on_event(event.kind, event.event)
                    except trio.EndOfChannel:
                        nursery.cancel_scope.cancel()  # the host's events ended: so do we
        finally:
            self._set(ChannelState.CLOSED)
