"""Every channel type QEMU offers, the port channel, reconnects, TLS and WebSocket transports."""

from __future__ import annotations

import ssl

import pytest
import trio

from tests.peers.spice import SpiceVM
from virtrio.channels.spice import ChannelType, PortChannel, open_spice_session
from virtrio.errors import ChannelUnavailableError, ConnectError
from virtrio.primitives import ChannelState

PORT = "org.virtrio.serial0"


async def read_until(port: PortChannel, needle: bytes, *, timeout: float = 20) -> bytes:
    seen = b""
    with trio.fail_after(timeout):
        while needle not in seen:
            chunk = await port.receive_some()
            assert chunk, f"port closed; got {seen[-200:]!r}"
            seen += chunk
    return seen


async def test_every_offered_channel_links_and_drains(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(all_channels=True)
    async with open_spice_session(vm.address, channels={"all"}) as spice:
        kinds = {kind for kind, _ in spice.channels}
        assert {
            ChannelType.DISPLAY, ChannelType.INPUTS, ChannelType.CURSOR, ChannelType.PLAYBACK,
            ChannelType.RECORD, ChannelType.USBREDIR, ChannelType.PORT,
        } <= kinds  # fmt: skip
        assert set(spice.supervisors) == set(spice.channels)
        await trio.sleep(0.5)  # channels keep draining (pings, acks) without failing
        for key, sup in spice.supervisors.items():
            assert sup.client is not None, key
            assert sup.client.channel.is_connected, key
        assert (await spice.display()).state.primary is not None


async def test_port_both_ways_and_key_reaches_guest(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(all_channels=True)
    async with open_spice_session(vm.address) as spice:
        port = await spice.port(PORT)
        assert port.name == PORT
        await read_until(port, b"Press ESC for boot menu")
        await port.send_all(b"\x1b")  # ESC written to the port reaches SeaBIOS' serial console
        await read_until(port, b"Select boot device")


async def test_escape_key_on_inputs_seen_on_serial(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    # SeaBIOS prints its prompt once, at boot: the CPU waits until the port is ours
    vm: SpiceVM = spice_vm_factory(all_channels=True, paused=True)
    async with open_spice_session(vm.address) as spice:
        port = await spice.port(PORT)
        await trio.to_thread.run_sync(vm.qmp, "cont")
        await read_until(port, b"Press ESC for boot menu")
        await spice.send_keys("esc")
        await read_until(port, b"Select boot device")


async def test_a_dropped_channel_reconnects_alone(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        display_sup = spice.supervisors[(ChannelType.DISPLAY, 0)]
        inputs_sup = spice.supervisors[(ChannelType.INPUTS, 0)]
        old_display = display_sup.client
        old_inputs = inputs_sup.client
        assert old_display is not None
        assert old_inputs is not None
        # spice-server 0.15.1 can take QEMU down when a display connection drops in the middle
        # of the first full frame: drop it once the frame is complete
        await (await spice.display()).wait_ready()
        with display_sup.events.subscribe() as changes:
            await old_display.channel.abort()
            seen = []
            with trio.fail_after(10):
                while not seen or seen[-1] is not ChannelState.CONNECTED:
                    seen.append((await changes.receive()).state)
        assert seen[0] is ChannelState.DISCONNECTED
        assert display_sup.client is not old_display
        assert inputs_sup.client is old_inputs  # untouched
        assert spice.main.channel.is_connected
        assert (await spice.screenshot()).startswith(b"\x89PNG")


async def test_tls_port_verified_with_the_test_ca(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(tls=True)
    ctx = ssl.create_default_context(cafile=str(vm.ca_file))
    async with open_spice_session(f"tls://127.0.0.1:{vm.tls_port}", ssl_context=ctx) as spice:
        assert (await spice.screenshot()).startswith(b"\x89PNG")
    # verification is on by default: the system CAs do not know the test CA
    with pytest.raises(ConnectError, match="TLS"):
        async with open_spice_session(f"tls://127.0.0.1:{vm.tls_port}", connect_timeout=5):
            pass


async def test_websocket_through_websockify(spice_vm_factory, websockify) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(tls=True)
    url = websockify(f"127.0.0.1:{vm.tcp_port}")
    async with open_spice_session(url) as spice:
        assert {k for k, _ in spice.channels} >= {ChannelType.DISPLAY, ChannelType.INPUTS}
        assert (await spice.screenshot()).startswith(b"\x89PNG")


async def test_tls_only_channel_moves_to_the_tls_port(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(tls=True, tls_channels=("inputs",))
    plain = f"tcp://127.0.0.1:{vm.tcp_port}"
    ctx = ssl.create_default_context(cafile=str(vm.ca_file))
    tls = f"tls://127.0.0.1:{vm.tls_port}"
    async with open_spice_session(plain, tls_address=tls, ssl_context=ctx) as spice:
        inputs = await spice.inputs()
        assert isinstance(inputs.channel._stream, trio.SSLStream)
        display = await spice.display()
        assert not isinstance(display.channel._stream, trio.SSLStream)
        await spice.send_keys("esc")
    # without the TLS port the refusal is explicit
    async with open_spice_session(plain, channels={"display"}) as spice:
        with pytest.raises(ChannelUnavailableError, match="requires TLS"):
            await spice.inputs(timeout=1)


async def test_typed_digit_picks_a_boot_entry(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    # SeaBIOS prints its prompt once, at boot: the CPU waits until the port is ours
    vm: SpiceVM = spice_vm_factory(all_channels=True, paused=True)
    async with open_spice_session(vm.address) as spice:
        port = await spice.port(PORT)
        await trio.to_thread.run_sync(vm.qmp, "cont")
        await read_until(port, b"Press ESC for boot menu")
        await spice.send_keys("esc")
        await read_until(port, b"Select boot device")
        await spice.type_text("1")
        await read_until(port, b"Booting from")
