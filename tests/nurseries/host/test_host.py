"""The host nursery on libvirt's in-process test driver: states, reconnect, outage, pool."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from virtrio.channels.libvirt import DomainNotFoundError, EventKind
from virtrio.nurseries.host import (
    HostUnavailableError,
    LibvirtUriError,
    open_host,
    open_host_pool,
)
from virtrio.primitives import Backoff, ChannelState

NODE = """<node><domain type='test'><name>t1</name><memory>65536</memory>
<os><type>hvm</type></os></domain></node>"""

pytestmark = pytest.mark.usefixtures("no_libvirt_leftovers")


async def test_states_lookups_and_events() -> None:
    async with open_host("test:///default") as host:
        # open_host returns at once; the first connect runs in the background
        assert host.state in (ChannelState.CONNECTING, ChannelState.CONNECTED)
        assert (await host.domain("test").state()) == "running"
        assert host.state is ChannelState.CONNECTED
        with pytest.raises(DomainNotFoundError):
            await host.domain("missing").state()
        with host.events([EventKind.LIFECYCLE], domain="test") as events:
            vm = host.domain("test")
            await vm.call(lambda d: d.suspend())
            await vm.call(lambda d: d.resume())
            with trio.fail_after(5):
                got = [(await events.receive()).event for _ in range(2)]
        assert got == ["SUSPENDED", "RESUMED"]
        assert await host.call(lambda c: c.getType()) == "TEST"


async def test_reconnects_with_backoff_until_the_host_comes_back(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    backoff = Backoff(initial=0.02, maximum=0.05)
    async with open_host(f"test://{node}", backoff=backoff, connect_timeout=5) as host:
        with host.state_changes() as states:
            seen = []
            with trio.fail_after(10):
                while seen.count(ChannelState.DISCONNECTED) < 2:
                    change = await states.receive()
                    seen.append(change.state)
                    if change.state is ChannelState.DISCONNECTED:
                        assert change.retry_in is not None
                        assert "failed to parse" in str(change.error)
            assert ChannelState.RECONNECTING in seen
            assert ChannelState.CONNECTED not in seen
            # calls during the outage wait up to their deadline, then fail with a named error
            with pytest.raises(HostUnavailableError, match=r"not connected after 0\.1 s") as info:
                await host.domain("t1").state(timeout=0.1)
            assert info.value.last_error is not None
            await trio.Path(node).write_text(NODE)
            # the next attempt succeeds; a call waiting meanwhile goes through
            assert await host.domain("t1").state(timeout=10) == "running"
            assert host.state is ChannelState.CONNECTED
            assert host.supervisor.backoff.attempts == 0


async def test_pool_shares_one_host_per_uri() -> None:
    async with open_host_pool(call_timeout=5) as pool:
        first, second = await pool.host("test:///default"), await pool.host("test:///default")
        assert first is second
        assert list(pool.hosts) == ["test:///default"]
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(first.domain("test").state)
        with pytest.raises(LibvirtUriError):
            await pool.host("qemu+ssh:///system")


async def test_invalid_uri_fails_before_anything_starts() -> None:
    with pytest.raises(LibvirtUriError, match="unknown transport"):
        async with open_host("qemu+bogus://h/system"):
            pass  # pragma: no cover
