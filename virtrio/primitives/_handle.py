"""The one base of every supervised handle: a call waits for the connection up to its deadline.

A handle (``vm.qmp``, ``vm.spice``, a libvirt host, a supervised message connection) stays
valid across reconnects of the channel its :class:`~virtrio.primitives.Supervisor` keeps up.
Each call takes the connected client through :meth:`SupervisedHandle._connected`, which

* returns it at once while connected,
* waits through an outage up to the call's deadline, then raises
  :class:`~virtrio.errors.ChannelUnavailableError` (or the handle's subclass of it) carrying
  the error that took the channel down,
* raises the permanent error at once when the channel FAILED (a wrong password, a bad
  address): no call waits for a channel that will never come back.
"""

from __future__ import annotations

import math
from typing import ClassVar, Generic, TypeVar

from virtrio.errors import ChannelUnavailableError

from ._deadline import Deadline
from ._fanout import Subscription
from ._supervisor import ChannelState, Connection, StateChange, Supervisor

__all__ = ["SupervisedHandle"]

C = TypeVar("C", bound=Connection)


class SupervisedHandle(Generic[C]):
    """Calls through whichever client ``supervisor`` holds now; see the module docstring.

    Args:
        supervisor: keeps the channel up.
        call_timeout: the deadline of a call that gives none (``timeout=None``), the wait for a
            reconnect included; ``math.inf`` for none.
    """

    #: What a call raises when the channel stays down past its deadline.
    unavailable_error: ClassVar[type[ChannelUnavailableError]] = ChannelUnavailableError

    def __init__(self, supervisor: Supervisor[C], call_timeout: float = math.inf) -> None:
        #: The reconnect loop behind this handle.
        self.supervisor = supervisor
        #: The default deadline of a call (seconds), waiting for a reconnect included.
        self.call_timeout = call_timeout

    @property
    def state(self) -> ChannelState:
        """The channel's state now (CONNECTED, DISCONNECTED, FAILED, ...)."""
        return self.supervisor.state

    @property
    def is_connected(self) -> bool:
        """Whether a call made now finds the channel up."""
        client = self.supervisor.client
        return client is not None and client.is_connected

    @property
    def last_error(self) -> BaseException | None:
        """The error that last took the channel down (the permanent one, once FAILED)."""
        return self.supervisor.last_error

    def state_changes(self, *, max_queue: int = 256) -> Subscription[StateChange]:
        """Subscribe to this channel's state changes (use as a context manager)."""
        name = self.supervisor.name
        return self.supervisor.events.subscribe(
            max_queue=max_queue, accept=lambda change: change.channel == name
        )

    def _limit(self, timeout: float | None) -> float:
        return self.call_timeout if timeout is None else timeout

    async def _connected(self, timeout: float | None) -> tuple[C, Deadline]:
        """The connected client, waiting for it up to ``timeout`` (None: the call timeout),
        and the deadline that is left for the rest of the call."""
        limit = self._limit(timeout)
        deadline = Deadline.after(limit)
        client = await self.supervisor.wait_connected(
            timeout=limit, unavailable=self.unavailable_error
        )
        return client, deadline

    async def wait_connected(self, *, timeout: float | None = None) -> None:
        """Wait until the channel is connected.

        Raises:
            ChannelUnavailableError: not connected within ``timeout`` (default: the call
                timeout).
            Exception: the permanent error the channel FAILED with, at once.
        """
        await self._connected(timeout)
