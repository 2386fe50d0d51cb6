"""A VM nursery attached to a libvirt domain on a real libvirtd (tests/peers/libvirtd.py):
channel states that follow the domain, Spice found in the domain XML, QMP events of a domain
started after the host connected."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.peers.libvirtd import LibvirtDaemon, define_guest
from virtrio.nurseries import Vm, open_vm
from virtrio.nurseries.host import HostNursery, open_host
from virtrio.primitives import ChannelState, StateChange, Subscription

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_libvirt_leftovers")]

CHANNELS = {"qmp": {"kind": "qmp"}, "qga": {"kind": "qga"}, "spice": {"kind": "spice"}}
#: booting the demo guest under TCG takes ~6.5-9 s alone, more on a loaded machine
BOOT = 90


async def _until(
    changes: Subscription[StateChange], channel: str, state: ChannelState, seen: list[str]
) -> None:
    while True:
        change = await changes.receive()
        seen.append(f"{change.channel}={change.state.value}")
        if (change.channel, change.state) == (channel, state):
            return


async def _until_each(
    changes: Subscription[StateChange], wanted: set[tuple[str, ChannelState]], seen: list[str]
) -> None:
    """Until every (channel, state) of ``wanted`` has been published, in any order."""
    left = set(wanted)
    while left:
        change = await changes.receive()
        seen.append(f"{change.channel}={change.state.value}")
        left.discard((change.channel, change.state))


@contextlib.asynccontextmanager
async def _vm(daemon: LibvirtDaemon, name: str) -> AsyncIterator[tuple[HostNursery, Vm]]:
    async with open_host(daemon.uri) as host:
        try:
            async with open_vm(name, libvirt=host, channels=CHANNELS) as vm:
                yield host, vm
        finally:
            with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                await host.call(lambda c: c.lookupByName(name).destroy(), timeout=20)


def _xml(daemon: LibvirtDaemon, name: str, spice_socket: Path | None) -> str:
    xml = define_guest(daemon, name)
    if spice_socket is None:
        return xml
    tcp = "<graphics type='spice' autoport='yes' listen='127.0.0.1'>"
    assert tcp in xml
    return xml.replace(
        tcp, f"<graphics type='spice'><listen type='socket' socket='{spice_socket}'/>"
    )


@pytest.mark.parametrize("listen", ["tcp", "unix"])
async def test_a_domain_started_after_the_host_connected(
    libvirtd: LibvirtDaemon, listen: str
) -> None:
    name = f"vt-{uuid.uuid4().hex[:8]}"
    spice_socket = libvirtd.root / "home" / f"{name}-spice.sock" if listen == "unix" else None
    seen: list[str] = []
    async with _vm(libvirtd, name) as (host, vm):
        await host.connection(timeout=20)
        with vm.state_changes() as changes:
            # the host is connected but the domain does not exist: no monitor, no agent (known
            # once the first query, in a worker thread, has answered)
            for channel, handle in ((f"{name}/qmp", vm.qmp), (f"{name}/qga", vm.qga)):
                if handle.state is ChannelState.CONNECTING:
                    with trio.fail_after(20):
                        await _until(changes, channel, ChannelState.DISCONNECTED, seen)
            assert vm.qmp.state is ChannelState.DISCONNECTED
            assert not vm.qmp.is_connected
            assert vm.channel_states()["qga"] is ChannelState.DISCONNECTED
            assert host.is_connected
            xml = _xml(libvirtd, name, spice_socket)
            await host.call(lambda c: c.createXML(xml, 0), timeout=60)
            with trio.fail_after(20):
                await _until(changes, f"{name}/qmp", ChannelState.CONNECTED, seen)
            assert vm.qmp.is_connected
            # the agent connects once the guest has booted (libvirt's agent-lifecycle event)
            await vm.qga.wait_connected(timeout=BOOT)
            with trio.fail_after(5):
                await _until(changes, f"{name}/qga", ChannelState.CONNECTED, seen)
            assert vm.channel_states() == {
                "qmp": ChannelState.CONNECTED,
                "qga": ChannelState.CONNECTED,
                "spice": ChannelState.CONNECTED,
            }
            await vm.qga.ping()

            # QMP events without a host reconnect: the domain started after the host connected
            with vm.events("STOP", "RESUME") as qmp_events:
                await vm.domain.call(lambda d: d.suspend())
                await vm.domain.call(lambda d: d.resume())
                with trio.fail_after(10):
                    names = [(await qmp_events.receive()).name for _ in range(2)]
            assert names == ["STOP", "RESUME"]
            assert vm.qmp.state is ChannelState.CONNECTED  # paused is still reachable

            # Spice from the domain XML, no address given
            await vm.spice.wait_connected(timeout=30)
            png = await vm.spice.screenshot(timeout=30)
            assert png.startswith(b"\x89PNG\r\n\x1a\n")

            # the domain stops: agent and monitor go, the host connection stays
            await vm.domain.call(lambda d: d.destroy())
            # both go, in either order (the agent's lifecycle event may come before or after)
            gone = {(f"{name}/{c}", ChannelState.DISCONNECTED) for c in ("qmp", "qga")}
            with trio.fail_after(20):
                await _until_each(changes, gone, seen)
            assert vm.qga.state is ChannelState.DISCONNECTED
            assert not vm.qga.is_connected
            assert host.is_connected  # the host connection never went
    # before the domain existed the monitor was down (published before or after the subscription)
    qmp_seen = [s for s in seen if s.startswith(f"{name}/qmp=")]
    assert qmp_seen[-2:] == [f"{name}/qmp=connected", f"{name}/qmp=disconnected"], seen
    assert qmp_seen.count(f"{name}/qmp=connected") == 1, seen
    assert f"{name}/qga=disconnected" in seen, seen
