"""SpiceManager across VMs, and a channel reader fed garbage by a peer."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from tests.peers.spice import SpiceVM
from virtrio.channels.spice import SpiceChannel, SpiceProtocolError
from virtrio.errors import ChannelUnavailableError, ConfigError, ConnectionLostError
from virtrio.nurseries.spice import open_spice_manager


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
        manager.add("bad", b.address, password="wrong")
        with pytest.raises(ChannelUnavailableError, match="password"):
            await manager.get("bad", timeout=0.5)


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
