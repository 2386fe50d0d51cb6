"""LibvirtConnection on the test driver: calls in threads, deadlines, errors, events."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from virtrio.channels.libvirt import (
    DomainNotFoundError,
    EventKind,
    LibvirtDomain,
    LibvirtError,
    LibvirtLocalError,
    LibvirtQga,
    LibvirtQmp,
    LibvirtUnsupportedError,
    open_connection,
)
from virtrio.errors import CommandError, ConnectError, ConnectionLostError, VirtrioTimeoutError

pytestmark = pytest.mark.usefixtures("no_libvirt_leftovers")


async def test_lookups_and_listing() -> None:
    async with open_connection("test:///default") as conn:
        [domain] = await conn.list_domains()
        assert (domain.name, domain.id, domain.state, domain.persistent) == (
            "test",
            1,
            "running",
            True,
        )
        by_uuid = await conn.lookup(domain.uuid)
        assert by_uuid.name() == "test"
        with pytest.raises(DomainNotFoundError, match="look up nope") as caught:
            await conn.lookup("nope")
        error = caught.value
        assert isinstance(error, LibvirtError)
        assert isinstance(error, CommandError)  # libvirt answered the call with an error
        assert (error.error_class, error.command) == ("VIR_ERR_NO_DOMAIN", "look up nope")
        assert error.desc
        assert str(error) == f"look up nope: {error.desc}"


async def test_calls_run_in_worker_threads_under_the_limiter_and_deadline() -> None:
    async with open_connection("test:///default", concurrency=2) as conn:
        threads: set[int] = set()
        running = peak = 0

        def work() -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            threads.add(threading.get_ident())
            time.sleep(0.05)
            running -= 1

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(conn.call, work)
        assert threading.get_ident() not in threads
        assert peak == 2
        with pytest.raises(VirtrioTimeoutError, match=r"slow: no answer within 0\.05 s"):
            await conn.call(time.sleep, 1, what="slow", timeout=0.05)


async def test_qmp_and_qga_unsupported_by_the_test_driver() -> None:
    async with open_connection("test:///default") as conn:
        vm = LibvirtDomain(conn, "test")
        with pytest.raises(LibvirtUnsupportedError, match="virDomainQemuMonitorCommand"):
            await LibvirtQmp(vm).query_status()
        with pytest.raises(LibvirtUnsupportedError, match="virDomainQemuAgentCommand"):
            await LibvirtQga(vm).ping()


async def test_closed_connection_fails_calls_and_ends_event_listeners() -> None:
    async with open_connection("test:///default") as conn:
        with conn.events([EventKind.REBOOT, EventKind.AGENT_LIFECYCLE]) as events:
            await conn.aclose()
            with pytest.raises(ConnectionLostError):
                await events.receive()
        with pytest.raises(ConnectionLostError, match="closed"):
            await conn.list_domains()
    assert not conn.is_connected


async def test_a_connection_without_domain_events_makes_calls_and_refuses_subscriptions() -> None:
    async with open_connection("test:///default", domain_events=False) as conn:
        [domain] = await conn.list_domains()
        assert domain.name == "test"
        with pytest.raises(LibvirtLocalError, match="domain_events=False"), conn.events():
            pass  # pragma: no cover
        assert conn.is_connected
    async with open_connection("test:///default") as conn:
        with conn.events([EventKind.LIFECYCLE], domain="test") as events:
            dom = await conn.lookup("test")
            await conn.call(dom.suspend)
            with trio.fail_after(10):
                event = await events.receive()
            assert (event.event, event.detail) == ("SUSPENDED", "PAUSED")


async def test_open_failure_is_a_connect_error() -> None:
    with pytest.raises(ConnectError, match=r"test:///nonexistent\.xml"):
        async with open_connection("test:///nonexistent.xml"):
            pass  # pragma: no cover
