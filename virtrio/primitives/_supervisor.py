"""Keeping one channel connected: connect, run, on failure wait out a backoff, reconnect.

A :class:`Supervisor` owns the reconnect loop of one channel (a QMP socket, a guest agent, a
libvirt connection, a Spice channel). Its ``connect`` callable returns an async context manager
that yields a connected client with a ``wait_closed()`` coroutine — every client in
:mod:`virtrio.channels` is such a thing. The loop::

    CONNECTING ─ok─▶ CONNECTED ─lost─▶ DISCONNECTED ─backoff─▶ RECONNECTING ─ok─▶ CONNECTED …
         └─fail─▶ DISCONNECTED ─backoff─▶ RECONNECTING ─fail─▶ DISCONNECTED …
    any state ─permanent error─▶ FAILED (final)

Only a transient failure is retried. Which failures are is one rule,
:func:`~virtrio.primitives.is_transient` (override it with ``transient=``): a refused connect, a
lost connection, a timeout are; a :class:`~virtrio.errors.PermanentError` (a ConfigError, a
wrong password, a protocol version the peer refuses) or a bug in our code (any exception
outside virtrio's hierarchy and the OS's) is not. On a permanent failure the loop stops in
FAILED with that error, and :meth:`Supervisor.wait_connected` raises it at once (a fresh
instance per caller), not after its deadline.

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
from typing import Generic, Protocol, TypeVar

import attrs
import trio

from virtrio.errors import ChannelUnavailableError

from ._backoff import Backoff
from ._errors import fresh_error, is_transient
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
    FAILED = "failed"  #: stopped by a permanent error (:attr:`Supervisor.last_error`)


@attrs.frozen
class StateChange:
    """One transition of a supervised channel, as published to subscribers."""

    #: The channel's name (``"qmp"``, ``"qga"``, a host URI, ...).
    channel: str
    state: ChannelState
    #: Why the channel went down (for DISCONNECTED and FAILED), else None.
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
        transient: whether a failure is worth another attempt (default
            :func:`~virtrio.primitives.is_transient`); a failure it rejects stops the channel in
            FAILED.
    """

    def __init__(
        self,
        name: str,
        connect: Callable[[], AbstractAsyncContextManager[C]],
        *,
        backoff: Backoff | None = None,
        events: Fanout[StateChange] | None = None,
        transient: Callable[[BaseException], bool] = is_transient,
    ) -> None:
        self.name = name
        #: The rule that tells a failure worth retrying from a permanent one.
        self.transient = transient
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
        down = state in (ChannelState.DISCONNECTED, ChannelState.FAILED)
        error = self.last_error if down else None
        change = StateChange(self.name, state, error, self.backoff.attempts, retry_in)
        log.debug("%s: %s", self.name, change)
        self.events.publish(change)
        self._changed.set()
        self._changed = trio.Event()

    @property
    def client(self) -> C | None:
        """The connected client, or None while the channel is down."""
        return self._client if self.state is ChannelState.CONNECTED else None

    @property
    def failed(self) -> BaseException | None:
        """The permanent error that stopped the channel (state FAILED), else None."""
        return self.last_error if self.state is ChannelState.FAILED else None

    async def wait_connected(
        self,
        *,
        timeout: float = math.inf,
        unavailable: type[ChannelUnavailableError] = ChannelUnavailableError,
    ) -> C:
        """Return the connected client, waiting for a (re)connect up to ``timeout`` seconds.

        Raises:
            ChannelUnavailableError: (or the given ``unavailable`` subclass) still not
                connected when the timeout passed, or the supervisor stopped; carries the last
                connection error.
            Exception: the permanent error the channel FAILED with, at once (a fresh instance
                of it for each caller).
        """
        with trio.move_on_after(timeout):
            while True:
                if self.state is ChannelState.FAILED and self.last_error is not None:
                    raise fresh_error(self.last_error)
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
        raise unavailable(f"channel {self.name} {what}{reason}", last_error=self.last_error)

    _started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the reconnect loop until cancelled, or until a permanent failure (then the state
        stays FAILED and this returns). Reports started at once."""
        self._started = True
        task_status.started()
        try:
            state = ChannelState.CONNECTING
            while True:
                self._set(state)
                state = ChannelState.RECONNECTING
                try:
                    await self._session()
                except Exception as exc:  # any failure of one attempt: classify it
                    self.last_error = exc
                if self.last_error is not None and not self.transient(self.last_error):
                    log.warning("%s: failed permanently: %s", self.name, self.last_error)
                    self._set(ChannelState.FAILED)
                    return
                log.info("%s: down: %s", self.name, self.last_error)
                delay = self.backoff.next_delay()
                self._set(ChannelState.DISCONNECTED, retry_in=delay)
                await trio.sleep(delay)
        finally:
            self._client = None
            if self.state is not ChannelState.FAILED:
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
