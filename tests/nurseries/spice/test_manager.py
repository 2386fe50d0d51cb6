"""SpiceManager across VMs, and a channel reader fed garbage by a peer."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from tests.peers.spice import SpiceVM
from virtrio.channels.spice import SpiceChannel, SpicePermissionError, SpiceProtocolError
from virtrio.errors import ConfigError, ConnectionLostError
from virtrio.nurseries.spice import open_spice_manager
from virtrio.primitives import ChannelState


async def test_manager_add_get_remove(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    a: SpiceVM = spice_vm_factory()
    b: SpiceVM = spice_vm_factory(password="pw")
    async with open_spice_manager() as manager:
        manager.add("a", a.address)
        manager.add("b", b.address, password="pw")
        with pytest.raises(ConfigError, match="already"):
            manager.add("a", a.address)
        sa, sb = await manager.get("a"), await manager.get("b")
        assert sa.session_id != sb.session_id
        assert (await sb.screenshot()).startswith(b"\x89PNG")
        manager.remove("a")
        with pytest.raises(ConfigError, match="no Spice session"):
            await manager.get("a")
        bad = manager.add("bad", b.address, password="wrong")
        # a wrong password is permanent: no deadline needs to pass (the guard only turns a
        # regression into a failure instead of a hang)
        with trio.fail_after(60), pytest.raises(SpicePermissionError, match="password"):
            await manager.get("bad", timeout=math.inf)
        assert bad.state is ChannelState.FAILED
        assert isinstance(bad.last_error, SpicePermissionError)


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=6, max_size=300), st.booleans())
def test_channel_reader_survives_garbage(garbage: bytes, mini: bool) -> None:
    async def main() -> None:
        ours, theirs = trio.testing.memory_stream_pair()
        channel = SpiceChannel(ours, 2, 0, mini_header=mini, server_caps=(), address="test")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel._run_reader)
            await theirs.send_all(garbage)
            await theirs.aclose()
            with trio.fail_after(5):
                await channel.wait_closed()
        assert isinstance(channel.closed_reason, (SpiceProtocolError, ConnectionLostError))

    trio.run(main)
