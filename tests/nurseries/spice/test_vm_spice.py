"""``open_vm(spice=...)``: vm.spice against a real Spice server; main's loss brings it back."""

from __future__ import annotations

import math

import pytest
import trio

from tests.peers.spice import SpiceVM
from virtrio.channels.spice import SpicePermissionError
from virtrio.errors import ConfigError
from virtrio.nurseries import Backoff, ChannelState, StateChange, Subscription, open_vm


async def test_vm_spice_screenshot_keys_and_session_reconnect(spice_vm: SpiceVM) -> None:
    async with open_vm(
        "web1", spice=spice_vm.address, backoff=lambda: Backoff(initial=0.05, maximum=0.5)
    ) as vm:
        png = await vm.spice.screenshot(timeout=10)
        assert png.startswith(b"\x89PNG")
        await vm.spice.send_keys("esc")
        session = await vm.spice.session()
        await session.main.channel.abort()  # main lost: the whole session comes back
        with trio.fail_after(10):
            while (await vm.spice.session()) is session:
                await session.wait_closed()
                await trio.lowlevel.checkpoint()
        assert (await vm.spice.screenshot(timeout=10)).startswith(b"\x89PNG")


async def test_vm_without_spice_says_so() -> None:
    async with open_vm("nospice") as vm:
        with pytest.raises(ConfigError, match="no Spice channel"):
            _ = vm.spice


async def test_vm_channel_states_include_spice(spice_vm: SpiceVM) -> None:
    """A VM with only Spice reports its Spice channel's state (it returned ``{}``)."""
    async with open_vm("web1", spice=spice_vm.address) as vm:
        await vm.spice.session(timeout=10)
        assert vm.channel_states() == {"spice": ChannelState.CONNECTED}


async def test_a_wrong_password_fails_the_channel_and_every_call_at_once(
    spice_vm_factory,  # type: ignore[no-untyped-def]
) -> None:
    server: SpiceVM = spice_vm_factory(password="right")
    async with open_vm(
        "locked",
        spice=server.address,
        password="wrong",
        call_timeout=math.inf,  # a call that waited for the channel would never return
        backoff=lambda: Backoff(initial=0.05, maximum=0.5),
    ) as vm:
        with vm.state_changes() as changes, trio.fail_after(60):  # a guard against a hang
            with pytest.raises(SpicePermissionError, match="password") as first:
                await vm.spice.screenshot()
            with pytest.raises(SpicePermissionError) as second:
                await vm.spice.send_keys("esc")
            seen = await _until_failed(changes)
        assert vm.spice.state is ChannelState.FAILED
        assert not vm.spice.is_connected
        assert first.value is not second.value  # each call its own instance
        assert isinstance(seen[-1].error, SpicePermissionError)
        assert ChannelState.RECONNECTING not in [c.state for c in seen]  # never retried


async def _until_failed(changes: Subscription[StateChange]) -> list[StateChange]:
    seen = [await changes.receive()]
    while seen[-1].state is not ChannelState.FAILED:
        seen.append(await changes.receive())
    return seen
