"""The VM nursery: one per VM, owning the supervisors of its channels.

::

    async with open_vm("web1", qmp="unix:/run/web1/qmp.sock", qga="unix:/run/web1/qga.sock") as vm:
        with vm.state_changes() as changes:           # CONNECTING / CONNECTED / DISCONNECTED ...
            ...
        print(await vm.qmp.query_status())
        result = await vm.qga.shell("uname -a", timeout=30)

``vm.qmp`` and ``vm.qga`` stay valid across reconnects: a call made while the channel is down
waits for it to come back, up to the call's deadline, then raises
:class:`~virtrio.errors.ChannelUnavailableError` carrying the error that took it down. QMP
events are delivered to ``vm.events()`` listeners across reconnects too. Leaving the block
cancels every channel task of the VM at once.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import trio

from virtrio.channels import Address, parse_address
from virtrio.channels.qga import QgaClient, QgaCommands, open_qga
from virtrio.channels.qmp import QmpClient, QmpCommands, QmpEvent, open_qmp
from virtrio.errors import ConfigError
from virtrio.primitives import (
    Backoff,
    ChannelState,
    Connection,
    Executor,
    Fanout,
    StateChange,
    Subscription,
    SupervisedHandle,
    Supervisor,
    open_service_nursery,
)
from virtrio.primitives._deprecated import warn_renamed

if TYPE_CHECKING:
    from virtrio.channels.libvirt import LibvirtDomain
    from virtrio.channels.virtio_serial import StreamReader
    from virtrio.nurseries.host import HostNursery, HostQga, HostQmp
    from virtrio.nurseries.spice import SupervisedSpice

__all__ = ["SupervisedQga", "SupervisedQmp", "Vm", "open_vm"]


class _ConnectedExecutor(Connection, Executor, Protocol):
    """A client the supervisor keeps up that runs commands (the QMP and QGA clients)."""


E = TypeVar("E", bound=_ConnectedExecutor)


class _SupervisedExecute(SupervisedHandle[E], Executor):
    """``execute`` through whichever client the supervisor currently holds."""

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` on the connected client, waiting through an outage (the contract
        of :meth:`Executor.execute <virtrio.primitives.Executor.execute>`).

        Raises:
            ChannelUnavailableError: the channel did not come back within ``timeout``.
            Exception: the permanent error the channel FAILED with, at once.
        """
        client, deadline = await self._connected(timeout)
        return await client.execute(command, arguments, timeout=deadline.remaining())


class SupervisedQmp(_SupervisedExecute[QmpClient], QmpCommands):
    """The VM's QMP handle: every :class:`~virtrio.channels.qmp.QmpCommands` helper, valid
    across reconnects."""


class SupervisedQga(_SupervisedExecute[QgaClient], QgaCommands):
    """The VM's guest-agent handle: every :class:`~virtrio.channels.qga.QgaCommands` helper,
    valid across reconnects."""


class Vm:
    """A VM's handles and event streams, valid for the life of its :func:`open_vm` block."""

    def __init__(
        self,
        name: str,
        qmp: SupervisedQmp | HostQmp | None,
        qga: SupervisedQga | HostQga | None,
        states: Fanout[StateChange],
        events: Fanout[QmpEvent],
        domain: LibvirtDomain | None = None,
    ) -> None:
        #: The VM's name (used in state changes and errors).
        self.name = name
        self._qmp = qmp
        self._qga = qga
        self._states = states
        self._events = events
        self._domain = domain
        self._channels: list[StreamReader] = []
        self._spice: SupervisedSpice | None = None

    @property
    def domain(self) -> LibvirtDomain:
        """The libvirt domain (XML, state, raw calls) of a VM opened with ``libvirt=``.

        Raises:
            ConfigError: the VM was not opened through libvirt.
        """
        if self._domain is None:
            raise ConfigError(f"VM {self.name} was not opened through libvirt (open_vm(libvirt=))")
        return self._domain

    async def open_virtio_serial(
        self,
        port: str,
        *,
        via: Literal["auto", "libvirt", "socket"] = "auto",
        connect_timeout: float = 10.0,
    ) -> StreamReader:
        """Open the VM's virtio-serial channel ``port`` (libvirt VMs); the VM nursery owns it
        and closes it when its block exits (closing it earlier is fine too)."""
        from virtrio.channels.virtio_serial import open_virtio_serial

        channel = await open_virtio_serial(
            self.domain, port, via=via, connect_timeout=connect_timeout
        )
        self._channels.append(channel)
        return channel

    @property
    def qmp(self) -> SupervisedQmp | HostQmp:
        """The QMP handle.

        Raises:
            ConfigError: the VM was opened without a QMP address.
        """
        if self._qmp is None:
            raise ConfigError(f"VM {self.name} has no QMP channel (open_vm(qmp=...))")
        return self._qmp

    @property
    def qga(self) -> SupervisedQga | HostQga:
        """The guest-agent handle.

        Raises:
            ConfigError: the VM was opened without a guest-agent address.
        """
        if self._qga is None:
            raise ConfigError(f"VM {self.name} has no guest-agent channel (open_vm(qga=...))")
        return self._qga

    @property
    def spice(self) -> SupervisedSpice:
        """The Spice handle (screenshots, keys, mouse, port streams); needs ``open_vm(spice=)``."""
        if self._spice is None:
            raise ConfigError(f"VM {self.name} has no Spice channel (open_vm(spice=...))")
        return self._spice

    def channel_states(self) -> dict[str, ChannelState]:
        """Each channel's current state, by channel name (``"qmp"``, ``"qga"``, ``"spice"``):
        every channel the VM was opened with, and no other."""
        handles = {"qmp": self._qmp, "qga": self._qga, "spice": self._spice}
        return {name: h.state for name, h in handles.items() if h is not None}

    def state_changes(self, *, max_queue: int = 256) -> Subscription[StateChange]:
        """Subscribe to the state changes of every channel of this VM."""
        return self._states.subscribe(max_queue=max_queue)

    def events(self, *names: str, max_queue: int = 1024) -> Subscription[QmpEvent]:
        """Subscribe to QMP events (all, or the named ones), across reconnects."""
        wanted = frozenset(names)
        return self._events.subscribe(
            max_queue=max_queue, accept=(lambda e: e.name in wanted) if wanted else None
        )


def _channel(
    vm_name: str,
    channel: str,
    connect: Callable[[], AbstractAsyncContextManager[E]],
    backoff: Backoff | None,
    states: Fanout[StateChange],
) -> Supervisor[E]:
    return Supervisor(
        f"{vm_name}/{channel}",
        connect,
        backoff=backoff if backoff is not None else Backoff(),
        events=states,
    )


def _stream_address(address: str | Address) -> Address:
    """A QMP or guest-agent socket: a stream address, not a WebSocket URL."""
    parsed = parse_address(address)
    if parsed.scheme not in ("unix", "tcp", "vsock"):
        raise ConfigError(f"expected a unix:, tcp:// or vsock:// socket, not {parsed.scheme}://")
    return parsed


def _check_timeout(field: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value <= 0:
        raise ConfigError(f"open_vm: {field} must be a number of seconds > 0, got {value!r}")


T = TypeVar("T")


def _checked(field: str, address: str | Address | None, parse: Callable[[Any], T]) -> T | None:
    """``parse(address)``, with a ConfigError that names the field."""
    if address is None:
        return None
    try:
        return parse(address)
    except ConfigError as exc:
        raise ConfigError(f"open_vm: {field}={address!r}: {exc}") from None


def open_vm(
    name: str = "vm",
    *,
    qmp: str | Address | None = None,
    qga: str | Address | None = None,
    spice: str | Address | None = None,
    password: str = "",
    call_timeout: float = 30.0,
    connect_timeout: float = 10.0,
    backoff: Callable[[], Backoff] = Backoff,
    libvirt: HostNursery | None = None,
    spice_password: str | None = None,
) -> AbstractAsyncContextManager[Vm]:
    """Open the nursery of one VM, supervising a channel per address given.

    Use as ``async with open_vm(...) as vm:``. Every address and option is checked by the call
    itself, before anything starts.

    Args:
        name: names the VM in state changes (channels are ``NAME/qmp``, ``NAME/qga``).
        qmp: the QMP socket address, if any.
        qga: the guest agent's host socket address, if any.
        spice: the Spice server address (``unix:``, ``tcp://``, ``tls://``, ``ws://``), if any;
            ``vm.spice`` then screenshots, types and clicks. (A libvirt domain's Spice address
            comes from its XML: pass it here.)
        password: the Spice password.
        call_timeout: default deadline of a call through a handle (including any wait for a
            reconnect).
        connect_timeout: deadline of one connection attempt (for the guest agent, the first
            ``guest-sync-delimited`` answer: a booting guest answers once its agent starts).
        backoff: makes each channel's delay policy (default 1 s doubling to 60 s, jittered).
        libvirt: attach to the libvirt domain ``name`` on this host instead of sockets: QMP
            and QGA go through the host's shared connection (``vm.qmp``/``vm.qga`` keep their
            interface; their state is the host connection's), and ``vm.open_virtio_serial``
            opens its channels.
        spice_password: deprecated name of ``password``.

    Raises:
        ConfigError: from ``open_vm(...)`` itself, before any channel starts: an address or
            option is invalid (the message names the field), or addresses are given with
            ``libvirt``. A permanent failure found only by connecting (a wrong Spice password)
            puts that channel in FAILED: its handle then raises the error at once.
    """
    if spice_password is not None:
        warn_renamed("open_vm", "spice_password", "password")
        password = spice_password
    _check_timeout("call_timeout", call_timeout)
    _check_timeout("connect_timeout", connect_timeout)
    if libvirt is not None:
        if qmp is not None or qga is not None or spice is not None:
            raise ConfigError("open_vm: give socket addresses or libvirt=, not both")
        return _open_libvirt_vm(name, libvirt)
    qmp_addr = _checked("qmp", qmp, _stream_address)
    qga_addr = _checked("qga", qga, _stream_address)
    if spice is not None:
        from virtrio.channels.spice import SpiceTransport

        # tls:// is Spice's own scheme: keep the text, which open_spice_session accepts
        _checked("spice", spice, SpiceTransport.parse)
    return _open_socket_vm(
        name,
        qmp_addr,
        qga_addr,
        spice,
        password,
        call_timeout=call_timeout,
        connect_timeout=connect_timeout,
        backoff=backoff,
    )


@asynccontextmanager
async def _open_socket_vm(
    name: str,
    qmp_addr: Address | None,
    qga_addr: Address | None,
    spice: str | Address | None,
    password: str,
    *,
    call_timeout: float,
    connect_timeout: float,
    backoff: Callable[[], Backoff],
) -> AsyncIterator[Vm]:
    states: Fanout[StateChange] = Fanout(max_queue=256)
    events: Fanout[QmpEvent] = Fanout(max_queue=1024)
    supervisors: list[Supervisor[Any]] = []
    qmp_handle = qga_handle = None
    if qmp_addr is not None:
        qmp_sup = _channel(
            name,
            "qmp",
            lambda: open_qmp(
                qmp_addr,
                connect_timeout=connect_timeout,
                call_timeout=call_timeout,
                event_fanout=events,
            ),
            backoff(),
            states,
        )
        supervisors.append(qmp_sup)
        qmp_handle = SupervisedQmp(qmp_sup, call_timeout)
    if qga_addr is not None:
        qga_sup = _channel(
            name,
            "qga",
            lambda: open_qga(qga_addr, connect_timeout=connect_timeout, call_timeout=call_timeout),
            backoff(),
            states,
        )
        supervisors.append(qga_sup)
        qga_handle = SupervisedQga(qga_sup, call_timeout)
    vm = Vm(name, qmp_handle, qga_handle, states, events)
    if spice is not None:
        from virtrio.channels.spice import SpiceSession, open_spice_session
        from virtrio.nurseries.spice import SupervisedSpice

        spice_sup: Supervisor[SpiceSession] = Supervisor(
            f"{name}/spice",
            lambda: open_spice_session(
                spice,
                password=password,
                connect_timeout=connect_timeout,
                call_timeout=call_timeout,
            ),
            backoff=backoff(),
            events=states,
        )
        supervisors.append(spice_sup)
        vm._spice = SupervisedSpice(spice_sup, call_timeout)
    try:
        async with open_service_nursery() as nursery:
            for supervisor in supervisors:
                await nursery.start(supervisor.run)
            try:
                yield vm
            finally:
                nursery.cancel_scope.cancel()
    finally:
        states.close()
        events.close()


@asynccontextmanager
async def _open_libvirt_vm(name: str, host: HostNursery) -> AsyncIterator[Vm]:
    states = host.supervisor.events  # the host connection's state changes
    events: Fanout[QmpEvent] = Fanout(max_queue=1024)
    vm = Vm(name, host.qmp(name), host.qga(name), states, events, domain=host.domain(name))
    try:
        async with open_service_nursery() as nursery:
            # returns once QMP events are registered (at once if the host is down)
            await nursery.start(_forward_qmp_events, host, name, events)
            try:
                yield vm
            finally:
                nursery.cancel_scope.cancel()
    finally:
        events.close()
        with trio.CancelScope(shield=True):
            for channel in vm._channels:
                await channel.aclose()


async def _forward_qmp_events(
    host: HostNursery,
    name: str,
    events: Fanout[QmpEvent],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """QMP events through libvirt into the VM's fanout, registered again on every connection."""
    from virtrio.errors import VirtrioError

    started = False
    while True:
        if not started and host.state is not ChannelState.CONNECTED:
            task_status.started()
            started = True
        if host.state is ChannelState.FAILED:
            return  # for good: every call through the VM's handles raises the host's error
        try:
            connection = await host.connection(math.inf)
        except Exception:
            if host.supervisor.failed is not None:  # failed while we waited
                return
            raise
        try:
            async with connection.qmp_events(name) as source:
                if not started:
                    task_status.started()
                    started = True
                async for event in source:
                    events.publish(event)
        except VirtrioError:
            pass  # lost, or the domain is not running: wait for the next connection
        if not started:
            task_status.started()
            started = True
        await connection.wait_closed()
