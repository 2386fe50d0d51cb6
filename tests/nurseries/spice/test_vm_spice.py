"""``open_vm(spice=...)``: vm.spice against a real Spice server; main's loss brings it back."""

from __future__ import annotations

import pytest
import trio

from tests.peers.spice import SpiceVM
from virtrio.errors import ConfigError
from virtrio.nurseries import Backoff, ChannelState, open_vm


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
