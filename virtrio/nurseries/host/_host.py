"""One supervised libvirt connection per host, shared by every VM and protocol on it.

:func:`open_host` runs a :class:`~virtrio.nurseries.Supervisor` around
:func:`~virtrio.channels.libvirt.open_connection`: connect, keep alive (libvirt's keepalive),
on loss back off (1 s → 60 s by default) and reconnect, publishing each state
(connecting / connected / disconnected / reconnecting) as a
:class:`~virtrio.nurseries.StateChange`. A call made during an outage waits up to its deadline
for the connection to come back, then raises :class:`HostUnavailableError`.

:func:`open_host_pool` hands out one :class:`HostNursery` per host URI to any number of VM
nurseries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from virtrio.channels.libvirt import (
    DomainEvent,
    EventKind,
    LibvirtConnection,
    LibvirtDomain,
    LibvirtError,
    LibvirtQga,
    LibvirtQmp,
    LibvirtUri,
    open_connection,
    parse_libvirt_uri,
)
from virtrio.errors import ChannelUnavailableError, ConnectionLostError, VirtrioError
from virtrio.primitives import (
    Backoff,
    ChannelState,
    Deadline,
    Fanout,
    StateChange,
    Subscription,
    SupervisedHandle,
    Supervisor,
    open_service_nursery,
)

__all__ = [
    "HostNursery",
    "HostPool",
    "HostQga",
    "HostQmp",
    "HostUnavailableError",
    "open_host",
    "open_host_pool",
]

if TYPE_CHECKING:
    from ._domainstate import DomainChannelState

R = TypeVar("R")

#: The guest agent's virtio-serial port name.
AGENT_CHANNEL = "org.qemu.guest_agent.0"


class HostUnavailableError(LibvirtError, ChannelUnavailableError):
    """The host's libvirt connection stayed down past the call's deadline (or was stopped)."""


class HostNursery(SupervisedHandle[LibvirtConnection]):
    """The supervised connection to one libvirt host. Create it with :func:`open_host`.

    A :class:`~virtrio.primitives.SupervisedHandle`: :attr:`state`, :meth:`state_changes`,
    :attr:`is_connected`; calls wait through an outage up to their deadline, then raise
    :class:`HostUnavailableError`; a permanent failure (a libvirt authentication failure)
    raises at once.
    """

    unavailable_error = HostUnavailableError

    def __init__(
        self,
        uri: LibvirtUri,
        *,
        keepalive_interval: int,
        keepalive_count: int,
        connect_timeout: float,
        call_timeout: float,
        backoff: Backoff | None,
    ) -> None:
        #: the validated URI
        self.uri = uri
        self._keepalive = (keepalive_interval, keepalive_count)
        self._connect_timeout = connect_timeout
        self._events: Fanout[DomainEvent] = Fanout(max_queue=1024, overflow="disconnect")
        super().__init__(Supervisor(str(uri), self._connect, backoff=backoff), call_timeout)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[LibvirtConnection]:
        interval, count = self._keepalive
        async with (
            open_connection(
                str(self.uri),
                keepalive_interval=interval,
                keepalive_count=count,
                connect_timeout=self._connect_timeout,
                call_timeout=self.call_timeout,
            ) as connection,
            trio.open_nursery() as nursery,
        ):
            with connection.events() as events:
                nursery.start_soon(self._forward, events)
                yield connection
                nursery.cancel_scope.cancel()

    async def _forward(self, events: Subscription[DomainEvent]) -> None:
        try:
            async for event in events:
                self._events.publish(event)
        except VirtrioError:
            return  # the connection went; the supervisor reconnects and a new forwarder starts

    async def connection(self, timeout: float | None = None) -> LibvirtConnection:
        """The connected :class:`~virtrio.channels.libvirt.LibvirtConnection`, waiting through
        an outage up to ``timeout`` seconds (default: :attr:`call_timeout`).

        Raises:
            HostUnavailableError: still not connected at the deadline; carries the last error.
        """
        connection, _ = await self._connected(timeout)
        return connection

    async def call(
        self, fn: Callable[[LibvirtConnection], R], *, timeout: float | None = None
    ) -> R:
        """Run the blocking ``fn(connection.raw)`` on the host's connection in a worker thread.

        Raises:
            HostUnavailableError: no connection within the deadline.
            ConnectionLostError: the connection went away during the call.
        """
        connection, deadline = await self._connected(timeout)
        raw = connection.raw
        return await connection.call(fn, raw, timeout=deadline.remaining(), what="call")

    def domain(self, name: str) -> LibvirtDomain:
        """A handle on the domain ``name`` that stays valid across reconnects."""
        return LibvirtDomain(self.connection, name, call_timeout=self.call_timeout)

    def qmp(self, name: str) -> HostQmp:
        """QMP to the domain ``name`` through libvirt (survives reconnects)."""
        return HostQmp(self, name)

    def qga(self, name: str) -> HostQga:
        """The guest agent of the domain ``name`` through libvirt (survives reconnects)."""
        return HostQga(self, name)

    def events(
        self,
        kinds: Iterable[EventKind] = tuple(EventKind),
        *,
        domain: str | None = None,
        max_queue: int = 1024,
    ) -> Subscription[DomainEvent]:
        """Domain events from every connection the host has, across reconnects.

        Use as a context manager: ``with host.events(domain="vm1") as sub: async for ev in sub``.
        Events that happen while the host is disconnected are not seen.
        """
        wanted = frozenset(kinds)
        return self._events.subscribe(
            max_queue=max_queue,
            accept=lambda e: e.kind in wanted and (domain is None or e.domain == domain),
        )

    def _close(self) -> None:
        self._events.close(ConnectionLostError(f"libvirt host {self.uri}: closed"))


class _OnHost:
    """QMP/QGA through a host nursery, with the VM nursery's handle interface (:attr:`state`,
    :attr:`is_connected`, :meth:`state_changes`, ``wait_connected``): the domain channel's
    (``tracker``, as a VM nursery gives it), else the host connection's."""

    def __init__(self, host: HostNursery, name: str, tracker: DomainChannelState | None = None):
        self._host = host
        self._tracker = tracker
        super().__init__(host.domain(name))  # type: ignore[call-arg]

    @property
    def state(self) -> ChannelState:
        """The domain channel's state (the host connection's without a tracker)."""
        return self._host.state if self._tracker is None else self._tracker.state

    @property
    def is_connected(self) -> bool:
        """Whether the channel (without a tracker: the host connection) is up."""
        return self.state is ChannelState.CONNECTED

    def state_changes(self, *, max_queue: int = 256) -> Subscription[StateChange]:
        """Subscribe to the channel's (without a tracker: the host connection's) changes."""
        if self._tracker is not None:
            return self._tracker.subscribe(max_queue=max_queue)
        return self._host.state_changes(max_queue=max_queue)


class HostQmp(_OnHost, LibvirtQmp):
    """QMP to a domain through its host's connection, valid across reconnects."""

    async def wait_connected(self, *, timeout: float | None = None) -> None:
        """Wait for the domain's monitor (with a tracker; else the host connection).

        Raises:
            ChannelUnavailableError: not connected by the deadline (HostUnavailableError
                without a tracker).
        """
        if self._tracker is not None:
            limit = self._host.call_timeout if timeout is None else timeout
            await self._tracker.wait_connected(limit)
            return
        await self._host.connection(timeout)


class HostQga(_OnHost, LibvirtQga):
    """The guest agent of a domain through its host's connection, valid across reconnects."""

    async def wait_connected(self, *, timeout: float | None = None) -> None:
        """Wait until libvirt reports the guest agent connected (its channel's state in the
        domain XML, else the agent-lifecycle event).

        Raises:
            ChannelUnavailableError: not connected by the deadline.
            KeyError: the domain has no guest-agent channel.
        """
        limit = self._host.call_timeout if timeout is None else timeout
        if self._tracker is not None:
            await self._tracker.wait_connected(limit)
            return
        deadline = Deadline.after(limit)
        name = self.domain.name
        with self._host.events([EventKind.AGENT_LIFECYCLE], domain=name) as events:
            xml = await self.domain.xml(timeout=limit)
            if xml.channel(AGENT_CHANNEL).state == "connected":
                return
            with trio.move_on_at(deadline.at):
                while (await events.receive()).event != "CONNECTED":
                    pass
                return
        raise ChannelUnavailableError(f"guest agent of {name} not connected after {limit:g} s")


@asynccontextmanager
async def open_host(
    uri: str | LibvirtUri,
    *,
    keepalive_interval: int = 30,
    keepalive_count: int = 5,
    connect_timeout: float = 10.0,
    call_timeout: float = 30.0,
    backoff: Backoff | None = None,
) -> AsyncIterator[HostNursery]:
    """Keep a connection to the libvirt host ``uri`` while in the block.

    Returns at once (the first connect runs in the background); calls wait for it.

    Args:
        keepalive_interval: libvirt keepalive interval in seconds (seed default 30; 0 disables).
        keepalive_count: unanswered probes before the connection counts as lost.
        connect_timeout: deadline of each connection attempt.
        call_timeout: default deadline of calls (the wait for a reconnect included).
        backoff: reconnect delays (default 1 s doubling to 60 s, with jitter).

    Raises:
        LibvirtUriError: ``uri`` is not an accepted libvirt URI.
    """
    parsed = uri if isinstance(uri, LibvirtUri) else parse_libvirt_uri(uri)
    host = HostNursery(
        parsed,
        keepalive_interval=keepalive_interval,
        keepalive_count=keepalive_count,
        connect_timeout=connect_timeout,
        call_timeout=call_timeout,
        backoff=backoff,
    )
    async with open_service_nursery() as nursery:
        await nursery.start(host.supervisor.run)
        try:
            yield host
        finally:
            host._close()
            nursery.cancel_scope.cancel()


class HostPool:
    """One :class:`HostNursery` per host URI, shared. Create it with :func:`open_host_pool`."""

    def __init__(self, nursery: trio.Nursery, options: dict[str, Any]) -> None:
        self._nursery = nursery
        self._options = options
        self._hosts: dict[str, HostNursery] = {}
        self._starting: dict[str, trio.Event] = {}

    @property
    def hosts(self) -> dict[str, HostNursery]:
        """The hosts opened so far, by canonical URI."""
        return dict(self._hosts)

    async def host(self, uri: str | LibvirtUri) -> HostNursery:
        """The host nursery for ``uri``, opened on first use (the same object afterwards).

        Raises:
            LibvirtUriError: ``uri`` is not an accepted libvirt URI.
        """
        parsed = uri if isinstance(uri, LibvirtUri) else parse_libvirt_uri(uri)
        key = parsed.key
        while key not in self._hosts:
            if key in self._starting:
                await self._starting[key].wait()
                continue
            started = self._starting[key] = trio.Event()
            try:
                self._hosts[key] = await self._nursery.start(self._run, parsed)
            finally:
                del self._starting[key]
                started.set()
        return self._hosts[key]

    async def _run(
        self,
        uri: LibvirtUri,
        *,
        task_status: trio.TaskStatus[HostNursery] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        async with open_host(uri, **self._options) as host:
            task_status.started(host)
            await trio.sleep_forever()


@asynccontextmanager
async def open_host_pool(**options: Any) -> AsyncIterator[HostPool]:
    """A pool of host connections (keyword options as for :func:`open_host`), closed on exit."""
    async with open_service_nursery() as nursery:
        pool = HostPool(nursery, options)
        try:
            yield pool
        finally:
            nursery.cancel_scope.cancel()
