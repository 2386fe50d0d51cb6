"""Keeping one channel connected: connect, run, on failure wait out a backoff, reconnect.

A :class:`Supervisor` owns the reconnect loop of one channel (a QMP socket, a guest agent, a
libvirt connection, a Spice channel). Its ``connect`` callable returns an async context manager
that yields a connected client with a ``wait_closed()`` coroutine — every client in
:mod:`virtrio.channels` is such a thing. The loop::

    CONNECTING ─ok─▶ CONNECTED ─lost─▶ DISCONNECTED ─backoff─▶ RECONNECTING ─ok─▶ CONNECTED …
         └─fail─▶ DISCONNECTED ─backoff─▶ RECONNECTING ─fail─▶ DISCONNECTED …

Each change is published on the supervisor's :class:`~virtrio.primitives.Fanout` as a
:class:`StateChange`. Callers that need the client use :meth:`Supervisor.wait_connected`, which
waits through an outage up to a deadline and then raises
:class:`~virtrio.errors.ChannelUnavailableError`. Cancelling the task that runs
:meth:`Supervisor.run` stops everything at once.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Generic, NoReturn, Protocol, TypeVar

import attrs
import trio

from virtrio.errors import ChannelUnavailableError

from ._backoff import Backoff
from ._fanout import Fanout

__all__ = ["ChannelState", "Connection", "StateChange", "Supervisor"]

log = logging.getLogger(__name__)


class Connection(Protocol):
    """What a supervised client must offer: whether it is connected, and a way to wait until
    its connection is gone."""

    @property
    def is_connected(self) -> bool:
        """False as soon as the connection is lost (before the supervisor has noticed)."""
        ...

    async def wait_closed(self) -> None:
        """Return once the connection has closed or failed."""
        ...


C = TypeVar("C", bound=Connection)


class ChannelState(enum.Enum):
    """Where a supervised channel is in its reconnect loop."""

    CONNECTING = "connecting"  #: first attempt
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  #: lost or failed; waiting out the backoff
    RECONNECTING = "reconnecting"  #: a later attempt
    CLOSED = "closed"  #: the supervisor stopped


@attrs.frozen
class StateChange:
    """One transition of a supervised channel, as published to subscribers."""

    #: The channel's name (``"qmp"``, ``"qga"``, a host URI, ...).
    channel: str
    state: ChannelState
    #: Why the channel went down (for DISCONNECTED), else None.
    error: BaseException | None = None
    #: Consecutive failed attempts so far.
    attempt: int = 0
    #: Seconds until the next attempt (for DISCONNECTED), else None.
    retry_in: float | None = None


class Supervisor(Generic[C]):
    """Keeps the channel ``name`` connected through ``connect``; see the module docstring.

    Args:
        name: names the channel in state changes and errors.
        connect: returns an async context manager yielding a connected client.
        backoff: the delay policy (default: 1 s doubling to 60 s with jitter).
        events: where state changes are published (default: a new Fanout, see :attr:`events`).
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], AbstractAsyncContextManager[C]],
        *,
        backoff: Backoff | None = None,
        events: Fanout[StateChange] | None = None,
    ) -> None:
        self.name = name
        self._connect = connect
        self.backoff = backoff if backoff is not None else Backoff()
        #: State changes of this channel.
        self.events: Fanout[StateChange] = events if events is not None else Fanout()
        self.state = ChannelState.CLOSED
        #: The error that last took the channel down.
        self.last_error: BaseException | None = None
        self._client: C | None = None
        self._changed = trio.Event()

    def _set(self, state: ChannelState, *, retry_in: float | None = None) -> None:
        self.state = state
        error = self.last_error if state is ChannelState.DISCONNECTED else None
        change = StateChange(self.name, state, error, self.backoff.attempts, retry_in)
        log.debug("%s: %s", self.name, change)
        if not self.events.closed:
            self.events.publish(change)
        self._changed.set()
        self._changed = trio.Event()

    @property
    def client(self) -> C | None:
        """The connected client, or None while the channel is down."""
        return self._client if self.state is ChannelState.CONNECTED else None

    async def wait_connected(self, *, timeout: float = math.inf) -> C:
        """Return the connected client, waiting for a (re)connect up to ``timeout`` seconds.

        Raises:
            ChannelUnavailableError: still not connected when the timeout passed, or the
                supervisor stopped; carries the last connection error.
        """
        with trio.move_on_after(timeout):
            while True:
                client = self._client
                # a client lost a moment ago is not handed out: the supervisor is about to
                # notice and reconnect
                if (
                    self.state is ChannelState.CONNECTED
                    and client is not None
                    and client.is_connected
                ):
                    return client
                if self.state is ChannelState.CLOSED and self._started:
                    break
                await self._changed.wait()
        reason = f": {self.last_error}" if self.last_error else ""
        what = (
            "stopped" if self.state is ChannelState.CLOSED else f"not connected after {timeout:g} s"
        )
        raise ChannelUnavailableError(
            f"channel {self.name} {what}{reason}", last_error=self.last_error
        )

    _started = False

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Run the reconnect loop until cancelled. Reports started at once."""
        self._started = True
        task_status.started()
        try:
            state = ChannelState.CONNECTING
            while True:
                self._set(state)
                state = ChannelState.RECONNECTING
                try:
                    await self._session()
                except Exception as exc:  # any failure of one attempt: record, back off
                    self.last_error = exc
                    log.info("%s: down: %s", self.name, exc)
                delay = self.backoff.next_delay()
                self._set(ChannelState.DISCONNECTED, retry_in=delay)
                await trio.sleep(delay)
        finally:
            self._client = None
            self._set(ChannelState.CLOSED)

    async def _session(self) -> None:
        # The connect timeout is the client's own (open_* take one): a fail_after around the
        # __aenter__ of a context manager that opens a nursery would tangle their cancel scopes.
        async with self._connect() as client:
            self._client = client
            self.backoff.reset()
            self.last_error = None
            self._set(ChannelState.CONNECTED)
            try:
                await client.wait_closed()
            finally:
                self._client = None
            self.last_error = getattr(client, "closed_reason", None) or self.last_error
