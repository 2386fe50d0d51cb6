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
from virtrio.channels.qga import QgaClient, QgaCommands
from virtrio.channels.qmp import QmpClient, QmpCommands, QmpEvent
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
    open_service_nursery,
)
from virtrio.primitives._deprecated import warn_renamed

from ._qmp_forward import forward_qmp_events
from ._registry import BuiltChannel, ChannelContext, KindRegistry, default_registry

if TYPE_CHECKING:
    from virtrio.channels.libvirt import LibvirtDomain
    from virtrio.channels.virtio_serial import StreamReader
    from virtrio.nurseries.host import HostNursery, HostQga, HostQmp
    from virtrio.nurseries.spice import SupervisedSpice

    from ._line import LineChannel
    from ._mux import SupervisedMux
    from ._xmux import XtransportMux

__all__ = ["ChannelSpec", "SupervisedQga", "SupervisedQmp", "Vm", "forward_qmp_events", "open_vm"]

#: How a channel is given to :func:`open_vm`: a map with ``kind`` and the kind's options
#: (``{"kind": "serial-console", "address": "unix:/run/vm/console.sock"}``), or any object with
#: ``kind`` and ``options`` attributes (an engine ``ChannelConfig``).
ChannelSpec = Mapping[str, Any] | Any


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
        channels: dict[str, BuiltChannel],
        states: Fanout[StateChange],
        events: Fanout[QmpEvent],
        domain: LibvirtDomain | None = None,
    ) -> None:
        #: The VM's name (used in state changes and errors).
        self.name = name
        self._built = channels
        self._states = states
        self._events = events
        self._domain = domain
        self._opened: list[StreamReader] = []

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
        """Open the VM's virtio-serial channel ``port`` once, unsupervised (libvirt VMs); the VM
        nursery closes it when its block exits. (A supervised, recorded port is a channel of
        kind ``virtio-serial``.)"""
        from virtrio.channels.virtio_serial import open_virtio_serial

        channel = await open_virtio_serial(
            self.domain, port, via=via, connect_timeout=connect_timeout
        )
        self._opened.append(channel)
        return channel

    def _of_kind(self, kind: str, what: str) -> Any:
        built = self._built.get(kind)
        if built is None or built.kind != kind:
            built = next((b for b in self._built.values() if b.kind == kind), None)
        if built is None:
            raise ConfigError(f"VM {self.name} has no {what} channel (open_vm({kind}=...))")
        return built.handle

    @property
    def qmp(self) -> SupervisedQmp | HostQmp:
        """The QMP handle (the channel named ``qmp``, else the first of kind qmp).

        Raises:
            ConfigError: the VM has no QMP channel.
        """
        handle: SupervisedQmp | HostQmp = self._of_kind("qmp", "QMP")
        return handle

    @property
    def qga(self) -> SupervisedQga | HostQga:
        """The guest-agent handle.

        Raises:
            ConfigError: the VM has no guest-agent channel.
        """
        handle: SupervisedQga | HostQga = self._of_kind("qga", "guest-agent")
        return handle

    @property
    def spice(self) -> SupervisedSpice:
        """The Spice handle (screenshots, keys, mouse, port streams)."""
        handle: SupervisedSpice = self._of_kind("spice", "Spice")
        return handle

    def channel(self, name: str) -> Any:
        """The handle of the channel ``name``, whatever its kind (a line channel for
        ``serial-console`` and ``virtio-serial``: ``mark()``/``expect()``/``send()``).

        Raises:
            ConfigError: no such channel (the message lists the VM's channels).
        """
        try:
            return self._built[name].handle
        except KeyError:
            known = ", ".join(sorted(self._built)) or "none"
            raise ConfigError(f"VM {self.name} has no channel {name!r} (has: {known})") from None

    def line(self, name: str) -> LineChannel:
        """The line channel ``name`` (kind ``serial-console`` or ``virtio-serial``)."""
        from ._line import LineChannel

        handle = self.channel(name)
        if not isinstance(handle, LineChannel):
            raise ConfigError(f"VM {self.name}: channel {name!r} is not line-oriented")
        return handle

    def mux(self, name: str) -> SupervisedMux | XtransportMux:
        """The stream endpoint ``name`` (kind ``mux``): ``open_stream()`` through reconnects
        (and ``accept_stream()``, ``ping()`` with yamux). A :class:`SupervisedMux` for
        ``protocol: yamux``, an :class:`XtransportMux` (a connection per stream) for
        ``xtransport``; the streams of both are half-closeable byte streams."""
        from ._mux import SupervisedMux
        from ._xmux import XtransportMux

        handle = self.channel(name)
        if not isinstance(handle, SupervisedMux | XtransportMux):
            raise ConfigError(f"VM {self.name}: channel {name!r} is not of kind mux")
        return handle

    def channel_kinds(self) -> dict[str, str]:
        """Each channel's kind, by channel name."""
        return {name: built.kind for name, built in self._built.items()}

    def channel_states(self) -> dict[str, ChannelState]:
        """Each channel's current state, by channel name: every channel the VM was opened
        with, and no other."""
        return {name: built.state() for name, built in self._built.items()}

    def state_changes(self, *, max_queue: int = 256) -> Subscription[StateChange]:
        """Subscribe to the state changes of every channel of this VM."""
        return self._states.subscribe(max_queue=max_queue)

    def events(self, *names: str, max_queue: int = 1024) -> Subscription[QmpEvent]:
        """Subscribe to QMP events (all, or the named ones), across reconnects."""
        wanted = frozenset(names)
        return self._events.subscribe(
            max_queue=max_queue, accept=(lambda e: e.name in wanted) if wanted else None
        )


def _spec(name: str, spec: ChannelSpec, registry: KindRegistry) -> tuple[str, Any]:
    if isinstance(spec, Mapping):
        fields = dict(spec)
        kind_name = fields.pop("kind", None)
        if not isinstance(kind_name, str):
            raise ConfigError(f"channel {name}: needs a 'kind' (known: {registry.names()})")
        kind = registry.get(kind_name)
        try:
            options = kind.options(**fields)
        except TypeError as exc:
            raise ConfigError(f"channel {name} ({kind_name}): {exc}") from None
        return kind_name, options
    kind_name, options = spec.kind, spec.options
    kind = registry.get(kind_name)
    return kind_name, options if options is not None else kind.options()


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
    channels: Mapping[str, ChannelSpec] | None = None,
    qmp: str | Address | None = None,
    qga: str | Address | None = None,
    spice: str | Address | None = None,
    password: str = "",
    spice_password: str | None = None,
    ports: Mapping[str, Address] | None = None,
    call_timeout: float = 30.0,
    connect_timeout: float = 10.0,
    backoff: Callable[[], Backoff] = Backoff,
    libvirt: HostNursery | None = None,
    domain: str | None = None,
    registry: KindRegistry | None = None,
    events: Fanout[QmpEvent] | None = None,
    states: Fanout[StateChange] | None = None,
) -> AbstractAsyncContextManager[Vm]:
    """Open the nursery of one VM, supervising each of its channels.

    Use as ``async with open_vm(...) as vm:``. Every channel is built (its kind looked up,
    its address and options checked) by the call itself, before anything starts.

    ::

        async with open_vm("demo", channels={
            "qmp": {"kind": "qmp", "address": "unix:/run/demo/qmp.sock"},
            "console": {"kind": "serial-console", "address": "unix:/run/demo/console.sock"},
            "mux0": {"kind": "mux", "address": "unix:/run/demo/org.virtrio.mux0.sock"},
        }) as vm:
            mark = vm.line("console").mark()
            stream = await vm.mux("mux0").open_stream()

    Args:
        name: names the VM in state changes (channels are ``NAME/CHANNEL``).
        channels: channel name -> spec (``{"kind": ..., **options}``); each kind is built by the
            channel-kind registry. The keywords ``qmp=``, ``qga=``, ``spice=`` add a channel of
            that name and kind at that address (the form before channels existed).
        password: the Spice password of ``spice=`` (``spice_password=`` is its deprecated
            name).
        ports: addresses of a launched QEMU's sockets by name (``qmp``, ``console``, ``spice``,
            virtio-serial port names): a channel without an address uses these.
        call_timeout: default deadline of a call through a handle (including any wait for a
            reconnect).
        connect_timeout: deadline of one connection attempt (for the guest agent, the first
            ``guest-sync-delimited`` answer: a booting guest answers once its agent starts).
        backoff: makes each channel's delay policy (default 1 s doubling to 60 s, jittered).
        libvirt: the VM is the libvirt domain ``domain`` (default ``name``) on this host: its
            channels go through the host's shared connection and the domain XML (QMP, QGA,
            virtio-serial, the console, Spice); with no ``channels``, ``qmp`` and ``qga``.
        registry: the channel kinds (default: the built-in and installed ones).
        events, states: fan-outs to publish the VM's QMP events and state changes into (the
            engine passes its own); default: new ones, closed with the block.

    Raises:
        ConfigError: from ``open_vm(...)`` itself, before any channel starts: a kind is
            unknown, an address or option is invalid (the message names the field), or the VM
            has no socket for a channel given without an address. A permanent failure found
            only by connecting (a wrong Spice password) puts that channel in FAILED: its handle
            then raises the error at once.
    """
    if spice_password is not None:
        warn_renamed("open_vm", "spice_password", "password")
        password = spice_password
    _check_timeout("call_timeout", call_timeout)
    _check_timeout("connect_timeout", connect_timeout)
    kinds = registry if registry is not None else default_registry()
    specs: dict[str, ChannelSpec] = dict(channels or {})
    for key, address in (("qmp", qmp), ("qga", qga), ("spice", spice)):
        if address is None:
            continue
        if libvirt is not None:
            raise ConfigError("open_vm: give socket addresses or libvirt=, not both")
        if key in specs:
            raise ConfigError(f"open_vm: channel {key!r} given twice ({key}= and channels=)")
        if key == "spice":
            from virtrio.channels.spice import SpiceTransport

            # tls:// is Spice's own scheme: keep the text, which open_spice_session accepts
            _checked("spice", address, SpiceTransport.parse)
            text = str(address)
        else:
            text = str(_checked(key, address, _stream_address))
        given: dict[str, Any] = {"kind": key, "address": text}
        if key == "spice":
            given["password"] = password
        specs[key] = given
    if libvirt is not None and not specs:
        specs = {"qmp": {"kind": "qmp"}, "qga": {"kind": "qga"}}
    # a libvirt VM's channel states are its domain's (not the host connection's)
    state_fanout: Fanout[StateChange] = states if states is not None else Fanout(max_queue=256)
    own_states = states is None
    own_events = events is None
    event_fanout: Fanout[QmpEvent] = events if events is not None else Fanout(max_queue=1024)
    built: dict[str, BuiltChannel] = {}
    for channel_name, spec in specs.items():
        kind_name, options = _spec(channel_name, spec, kinds)
        ctx = ChannelContext(
            name,
            channel_name,
            state_fanout,
            event_fanout,
            connect_timeout=connect_timeout,
            call_timeout=call_timeout,
            backoff=backoff,
            ports=dict(ports or {}),
            host=libvirt,
            domain=domain,
        )
        built[channel_name] = kinds.get(kind_name).build(ctx, options)
        built[channel_name].kind = kind_name
    dom = libvirt.domain(domain or name) if libvirt is not None else None
    vm = Vm(name, built, state_fanout, event_fanout, domain=dom)
    return _run_vm(vm, own_states=own_states, own_events=own_events)


@asynccontextmanager
async def _run_vm(vm: Vm, *, own_states: bool, own_events: bool) -> AsyncIterator[Vm]:
    built, state_fanout, event_fanout = vm._built, vm._states, vm._events
    try:
        async with open_service_nursery() as nursery:
            for channel in built.values():
                await nursery.start(channel.run)
            try:
                yield vm
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if own_states:
            state_fanout.close()
        if own_events:
            event_fanout.close()
        with trio.CancelScope(shield=True):
            for opened in vm._opened:
                await opened.aclose()
