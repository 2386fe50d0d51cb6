"""The engine: one nursery for a whole fleet.

::

    async with open_engine(load_fleet("fleet.yaml")) as engine:
        vm = engine.vm("web1")
        mark = vm.line("console").mark()
        seq = engine.mark()
        await vm.qga.execute("guest-shutdown")
        await engine.wait_event("SHUTDOWN", vm="web1", after=seq, timeout=30)

Inside: a :class:`~virtrio.nurseries.host.HostNursery` per libvirt host (one connection shared
by its VMs), the Spice manager for the fleet's ``spice:`` servers, and a task per VM that owns
the QEMU it launched (if any) and the VM nursery of its channels. Leaving the block, cancelled or
failing, stops every QEMU (``quit``, then SIGTERM, then SIGKILL after the grace) and reaps it.
"""

from __future__ import annotations

import collections
import math
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from virtrio.channels.qmp import QmpEvent
from virtrio.errors import ConfigError, VirtrioError, VirtrioTimeoutError
from virtrio.nurseries import (
    Backoff,
    ChannelState,
    Fanout,
    KindRegistry,
    StateChange,
    Subscription,
    Vm,
    default_registry,
    open_vm,
)
from virtrio.primitives import Deadline, open_service_nursery

from ._events import EngineEvent, EventKind, EventLog
from ._machines import channels_for, machine_for
from ._qemu import QemuProcess, open_qemu
from .config import Fleet, VmConfig

__all__ = ["Engine", "EngineStatistics", "open_engine"]


@attrs.frozen
class EngineStatistics:
    """A snapshot of the fleet (immutable)."""

    #: VMs by state: ``connected`` (every channel up), ``degraded`` (some), ``down`` (none),
    #: ``failed`` (a channel failed for good: a permanent error).
    vms: Mapping[str, int]
    #: Channels by :class:`~virtrio.nurseries.ChannelState` value.
    channels: Mapping[str, int]
    #: Times a channel connected again after having been connected.
    reconnects: int
    #: Engine events dropped for subscribers that did not keep up.
    events_dropped: int
    #: Events numbered so far.
    events: int


class _Tap(Fanout[Any]):
    """A VM's fan-out that also numbers what it publishes into the engine's stream."""

    def __init__(self, engine: Engine, vm: str, kind: EventKind, max_queue: int) -> None:
        super().__init__(max_queue=max_queue)
        self._engine = engine
        self._vm = vm
        self._kind = kind

    def publish(self, item: Any) -> None:
        if self.closed:
            return
        super().publish(item)
        self._engine._record(self._vm, self._kind, item)


class Engine:
    """The running fleet; see :func:`open_engine`."""

    def __init__(self, fleet: Fleet, log: EventLog, workdir: Path) -> None:
        #: The configuration it runs.
        self.fleet = fleet
        self.workdir = workdir
        self._log = log
        self._vms: dict[str, Vm] = {}
        self._qemus: dict[str, QemuProcess] = {}
        self._ever_connected: set[str] = set()
        self._reconnects = 0
        self.hosts: dict[str, Any] = {}
        #: The Spice manager (sessions named by the ``spice:`` servers' ``vm_id``).
        self.spice: Any = None

    # -- the VMs ---------------------------------------------------------------------------

    def vm(self, vm_id: str) -> Vm:
        """The VM ``vm_id`` (its handles: ``qmp``, ``qga``, ``channel(name)``, ``mux(name)``).

        Raises:
            ConfigError: no such VM.
        """
        try:
            return self._vms[vm_id]
        except KeyError:
            known = ", ".join(self._vms) or "none"
            raise ConfigError(f"no VM {vm_id!r} in the fleet (VMs: {known})") from None

    def vms(self, *, tag: str | None = None) -> list[Vm]:
        """Every VM (with ``tag``, those that have it), in the fleet's order."""
        return [
            self._vms[c.id]
            for c in self.fleet.vms
            if c.id in self._vms and (tag is None or tag in c.tags)
        ]

    def qemu(self, vm_id: str) -> QemuProcess:
        """The QEMU the engine launched for ``vm_id``.

        Raises:
            ConfigError: the VM is not one the engine launched.
        """
        try:
            return self._qemus[vm_id]
        except KeyError:
            raise ConfigError(f"VM {vm_id!r} is not a QEMU launched by the engine") from None

    async def wait_connected(self, *, timeout: float = 60.0) -> None:
        """Wait until every channel of every VM is connected.

        Raises:
            VirtrioTimeoutError: some are not by the deadline (the message names them).
        """
        with trio.move_on_after(timeout):
            while True:
                arrived = self._log._arrived
                if not self._not_connected():
                    return
                await arrived.wait()
        down = ", ".join(self._not_connected()[:10])
        raise VirtrioTimeoutError(f"channels not connected after {timeout:g} s: {down}")

    def _not_connected(self) -> list[str]:
        return [
            f"{vm.name}/{name}"
            for vm in self._vms.values()
            for name, state in vm.channel_states().items()
            if state is not ChannelState.CONNECTED
        ]

    # -- events ----------------------------------------------------------------------------

    def _record(self, vm: str, kind: EventKind, item: Any) -> None:
        if isinstance(item, StateChange):
            channel = item.channel.rpartition("/")[2]
            if item.state is ChannelState.CONNECTED:
                if item.channel in self._ever_connected:
                    self._reconnects += 1
                self._ever_connected.add(item.channel)
            data: dict[str, Any] = {"attempt": item.attempt}
            if item.error is not None:
                data["error"] = str(item.error)
            self._log.emit(vm, "state", item.state.value, channel, data)
        elif isinstance(item, QmpEvent):
            self._log.emit(vm, "qmp", item.name, "qmp", item.data)

    def mark(self) -> int:
        """The sequence number of the last event so far: the ``after=`` of a later wait."""
        return self._log.seq

    def events(
        self,
        *,
        vm: str | None = None,
        kinds: tuple[EventKind, ...] | None = None,
        max_queue: int | None = None,
    ) -> Subscription[EngineEvent]:
        """Subscribe to the engine's events from now on (``with engine.events() as sub``)."""
        return self._log.subscribe(vm=vm, kinds=kinds, max_queue=max_queue)

    def events_since(self, after: int) -> list[EngineEvent]:
        """The recorded events numbered above ``after``."""
        return self._log.since(after)

    async def wait_event(
        self,
        name: str,
        *,
        vm: str | None = None,
        kind: EventKind | None = None,
        channel: str | None = None,
        after: int | None = None,
        timeout: float = 30.0,
    ) -> EngineEvent:
        """The first event called ``name`` (of ``vm``, ``kind``, ``channel`` if given) numbered
        above ``after`` (default: from now). An event between ``after`` and the call is found.

        Raises:
            VirtrioTimeoutError: none within ``timeout``.
            MarkExpiredError: ``after`` fell out of the engine's event history.
        """

        def match(event: EngineEvent) -> bool:
            return (
                event.name == name
                and (vm is None or event.vm == vm)
                and (kind is None or event.kind == kind)
                and (channel is None or event.channel == channel)
            )

        return await self._log.wait(match, after=after, timeout=timeout, what=f"event {name}")

    def statistics(self) -> EngineStatistics:
        """A snapshot: VMs and channels by state, reconnects, events dropped."""
        vms: collections.Counter[str] = collections.Counter()
        channels: collections.Counter[str] = collections.Counter()
        for vm in self._vms.values():
            states = list(vm.channel_states().values())
            channels.update(s.value for s in states)
            up = sum(s is ChannelState.CONNECTED for s in states)
            if any(s is ChannelState.FAILED for s in states):
                vms["failed"] += 1
            else:
                vms["connected" if up == len(states) else "degraded" if up else "down"] += 1
        return EngineStatistics(
            dict(vms), dict(channels), self._reconnects, self._log.fanout.dropped, self._log.seq
        )


async def _quit(vm: Vm, process: QemuProcess, grace: float) -> None:
    """Ask QEMU to quit over QMP, up to ``grace`` seconds (open_qemu then signals)."""
    deadline = Deadline.after(grace)
    with trio.move_on_after(grace):
        try:
            await vm.qmp.execute("quit", timeout=min(grace, 2.0))
        except VirtrioError:
            return  # not answering: the signals do it
        with trio.move_on_after(deadline.remaining()):
            await process.wait()


@asynccontextmanager
async def open_engine(
    fleet: Fleet,
    *,
    registry: KindRegistry | None = None,
    workdir: str | Path | None = None,
    event_history: int = 65536,
    event_queue: int = 4096,
) -> AsyncIterator[Engine]:
    """Run ``fleet``: hosts, the Spice manager, launched QEMUs and a VM nursery per VM.

    Returns once every VM nursery has started (channels connect in the background; see
    :meth:`Engine.wait_connected`). QEMUs are launched (and their sockets bound) before that.

    Args:
        registry: the channel kinds (default: built-in and installed).
        workdir: where launched QEMUs keep their sockets and logs (default: a temporary
            directory removed on exit).
        event_history: engine events kept for ``wait_event(after=)``.
        event_queue: default queue of an ``engine.events()`` subscriber.

    Raises:
        ConfigError: the fleet refers to an unknown kind, host or template.
    """
    kinds = registry if registry is not None else default_registry()
    log = EventLog(history=event_history, max_queue=event_queue)
    defaults = fleet.defaults
    image = None
    if any(v.qemu is not None and v.qemu.template == "demo" for v in fleet.vms):
        from ._guest import build_guest

        image = await trio.to_thread.run_sync(build_guest)

    def backoff() -> Backoff:
        return Backoff(initial=defaults.backoff_initial, maximum=defaults.backoff_max)

    with tempfile.TemporaryDirectory(prefix="virtrio-engine-") as tmp:
        engine = Engine(fleet, log, Path(workdir) if workdir is not None else Path(tmp))
        try:
            async with AsyncExitStack() as stack:
                await _open_hosts(engine, stack)
                from virtrio.nurseries.spice import open_spice_manager

                engine.spice = await stack.enter_async_context(open_spice_manager())
                for server in fleet.spice.vms:
                    scheme = "tls" if server.tls else "tcp"
                    engine.spice.add(
                        server.vm_id,
                        f"{scheme}://{server.server_addr}:{server.port}",
                        password=server.password,
                        connect_timeout=defaults.connect_timeout,
                        call_timeout=defaults.call_timeout,
                    )
                nursery = await stack.enter_async_context(open_service_nursery())
                for config in fleet.vms:
                    await nursery.start(_run_vm, engine, config, kinds, image, backoff)
                try:
                    yield engine
                finally:
                    await _stop_all(engine, defaults.stop_grace)
                    nursery.cancel_scope.cancel()
        finally:
            log.close()


async def _open_hosts(engine: Engine, stack: AsyncExitStack) -> None:
    if not engine.fleet.hosts:
        return
    from virtrio.nurseries.host import open_host

    defaults = engine.fleet.defaults
    for host in engine.fleet.hosts:
        engine.hosts[host.id] = await stack.enter_async_context(
            open_host(
                host.uri,
                keepalive_interval=host.keepalive_interval,
                keepalive_count=host.keepalive_count,
                connect_timeout=defaults.connect_timeout,
                call_timeout=defaults.call_timeout,
                backoff=Backoff(initial=defaults.backoff_initial, maximum=defaults.backoff_max),
            )
        )


async def _stop_all(engine: Engine, grace: float) -> None:
    """Ask every launched QEMU to quit at once (shielded: runs when cancelled too)."""
    with trio.CancelScope(shield=True):
        async with trio.open_nursery() as nursery:
            for vm_id, process in engine._qemus.items():
                vm = engine._vms.get(vm_id)
                if vm is not None and process.process.returncode is None:
                    nursery.start_soon(_quit, vm, process, grace)


def _emit_output(engine: Engine, vm_id: str, vm: Any) -> None:
    """Output marks of every line channel: one ``output`` event per read, ``{"start", "end"}``
    byte offsets (``vm.channel(name).mark()`` positions) of what that read recorded."""
    from virtrio.nurseries import LineChannel

    for name in vm.channel_kinds():
        handle = vm.channel(name)
        if isinstance(handle, LineChannel):

            def mark(start: int, end: int, channel: str = name) -> None:
                engine._log.emit(vm_id, "output", "output", channel, {"start": start, "end": end})

            handle.add_output_listener(mark)


async def _run_vm(
    engine: Engine,
    config: VmConfig,
    kinds: KindRegistry,
    image: Any,
    backoff: Any,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    defaults = engine.fleet.defaults
    states = _Tap(engine, config.id, "state", 256)
    events = _Tap(engine, config.id, "qmp", 1024)
    options: dict[str, Any] = {
        "channels": channels_for(config),
        "call_timeout": defaults.call_timeout,
        "connect_timeout": defaults.connect_timeout,
        "backoff": backoff,
        "registry": kinds,
        "states": states,
        "events": events,
    }
    try:
        async with AsyncExitStack() as stack:
            if config.qemu is not None:
                qemu = await stack.enter_async_context(
                    open_qemu(
                        machine_for(config, image),
                        workdir=engine.workdir / config.id,
                        stop_timeout=defaults.stop_grace,
                    )
                )
                engine._qemus[config.id] = qemu
                options["ports"] = {"qmp": qemu.qmp_address, **qemu.port_addresses}
            elif config.host is not None:
                host = engine.hosts.get(config.host)
                if host is None:
                    raise ConfigError(f"VM {config.id}: no host {config.host!r} in the fleet")
                options["libvirt"] = host
                options["domain"] = config.domain or config.id
            vm = await stack.enter_async_context(open_vm(config.id, **options))
            engine._vms[config.id] = vm
            _emit_output(engine, config.id, vm)
            task_status.started()
            if config.qemu is not None:
                code = await engine._qemus[config.id].wait()
                engine._log.emit(config.id, "state", "exited", "qemu", {"returncode": code})
            await trio.sleep(math.inf)
    finally:
        engine._vms.pop(config.id, None)
        states.close()
        events.close()
