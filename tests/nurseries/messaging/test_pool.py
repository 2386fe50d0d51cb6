"""MessagePool: reuse, the size limit, idle expiry, health checks, failures that free a slot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.channels.messaging.helpers import running
from virtrio.channels.messaging import (
    ClientConfig,
    HealthCheck,
    MessageClient,
    MessageConnection,
    MessageServer,
    ServerConfig,
    Transport,
    with_yamux,
)
from virtrio.errors import ConfigError, ConnectError, VirtrioTimeoutError
from virtrio.nurseries.messaging import open_pool


class CountingEcho:
    """An echo server handler that counts the connections it served and has open."""

    def __init__(self) -> None:
        self.served = 0
        self.open = 0
        self.most_open = 0
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Return the next time a connection opens or closes."""
        await self._changed.wait()

    def _change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def __call__(self, connection: MessageConnection) -> None:
        self.served += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        self._change()
        try:
            async for message in connection:
                await connection.send(message)
        finally:
            self.open -= 1
            self._change()


async def settle(
    condition: Callable[[], bool], changed: Callable[[], Awaitable[None]], what: str
) -> None:
    """Wait (up to 5 s) for something the pool's or the server's tasks do on their own,
    looking again each time ``changed`` says something changed."""
    with trio.fail_after(5):
        while not condition():
            await changed()


async def test_connections_are_reused(listen_address: str, transport: Transport) -> None:
    handler = CountingEcho()
    async with running(MessageServer(ServerConfig(listen_address), transport), handler) as address:
        client = MessageClient(ClientConfig(address), transport)
        async with open_pool(client, max_size=4) as pool:
            for i in range(10):
                async with pool.connection() as connection:
                    await connection.send(b"%d" % i)
                    assert await connection.receive(timeout=5) == b"%d" % i
            assert (pool.size, pool.idle) == (1, 1)
        await settle(
            lambda: handler.open == 0, handler.wait_changed, "the pool closed its connection"
        )
    assert handler.served == 1


async def test_at_most_max_size_connections_and_borrowers_queue() -> None:
    handler = CountingEcho()
    async with (
        running(MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0")), handler) as a,
        open_pool(MessageClient.with_yamux(ClientConfig(a)), max_size=2) as pool,
    ):
        gate = trio.Event()
        holding = 0

        async def borrower(i: int) -> None:
            nonlocal holding
            async with pool.connection(timeout=10) as connection:
                holding += 1
                await connection.send(b"%d" % i)
                await gate.wait()
                assert await connection.receive(timeout=5) == b"%d" % i
                holding -= 1

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(borrower, i)
            await trio.testing.wait_all_tasks_blocked()
            assert (holding, pool.size) == (2, 2)  # the six others queue for a connection
            gate.set()
        assert pool.size == 2
    assert handler.served == 2
    assert handler.most_open == 2


async def test_borrowing_times_out_when_every_connection_stays_in_use() -> None:
    async with (
        running(MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0"))) as address,
        open_pool(MessageClient.with_yamux(ClientConfig(address)), max_size=1) as pool,
    ):
        async with pool.connection():
            with pytest.raises(VirtrioTimeoutError, match=r"all 1 connections stayed in use"):
                async with pool.connection(timeout=0.1):
                    pass
        async with pool.connection(timeout=1) as connection:  # free again
            assert connection.is_connected


async def test_a_borrower_that_fails_has_its_connection_closed(transport: Transport) -> None:
    handler = CountingEcho()
    async with (
        running(MessageServer(ServerConfig("tcp://127.0.0.1:0"), transport), handler) as a,
        open_pool(MessageClient(ClientConfig(a), transport)) as pool,
    ):

        async def buggy_borrower() -> None:
            async with pool.connection() as connection:
                await connection.send(b"a request whose reply nobody reads")
                raise KeyError("the borrower's own bug")

        with pytest.raises(KeyError):
            await buggy_borrower()
        assert (pool.size, pool.idle) == (0, 0)
        async with pool.connection() as connection:
            await connection.send(b"fresh")
            assert await connection.receive(timeout=5) == b"fresh"
    assert handler.served == 2


async def test_idle_connections_expire() -> None:
    handler = CountingEcho()
    async with (
        running(MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0")), handler) as a,
        open_pool(MessageClient.with_yamux(ClientConfig(a)), idle_timeout=0.2) as pool,
    ):
        async with pool.connection():
            pass
        assert pool.idle == 1
        await settle(lambda: pool.size == 0, pool.wait_changed, "the idle connection expired")
        await settle(lambda: handler.open == 0, handler.wait_changed, "the server saw it go")
        async with pool.connection() as connection:
            await connection.send(b"new")
            assert await connection.receive(timeout=5) == b"new"
    assert handler.served == 2


async def test_a_dead_idle_connection_is_never_handed_out(listen_address: str) -> None:
    async def one_reply(connection: MessageConnection) -> None:
        await connection.send(await connection.receive())
        await connection.disconnect()

    transport = with_yamux()
    async with (
        running(MessageServer(ServerConfig(listen_address), transport), one_reply) as a,
        open_pool(MessageClient(ClientConfig(a), transport)) as pool,
    ):
        for i in range(3):
            async with pool.connection() as connection:
                await connection.send(b"%d" % i)
                assert await connection.receive(timeout=5) == b"%d" % i
            # the server hangs up after each reply: the pool notices and drops it
            await settle(
                lambda: pool.idle == 0, pool.wait_changed, "the dead connection left the pool"
            )


async def test_health_checks_probe_idle_connections_and_drop_failing_ones() -> None:
    verdicts = [None, "no"]
    probed = trio.Event()

    async def probe(connection: MessageConnection) -> None:
        await connection.send(b"are you there?")  # an idle connection may be used freely
        assert await connection.receive() == b"are you there?"
        verdict = verdicts.pop(0)
        if not verdicts:
            probed.set()
        if verdict:
            raise RuntimeError("probe says no")  # whatever a probe raises means unhealthy

    handler = CountingEcho()
    check = HealthCheck(interval=0.05, timeout=2, probe=probe)
    async with running(MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0")), handler) as a:
        client = MessageClient.with_yamux(ClientConfig(a))
        async with open_pool(client, health_check=check) as pool:
            async with pool.connection():
                pass
            await settle(lambda: not verdicts, probed.wait, "both probes ran")
            await settle(
                lambda: pool.size == 0, pool.wait_changed, "the failing connection was dropped"
            )


async def test_connect_failures_reach_the_borrower_and_free_the_slot(tmp_path: Path) -> None:
    client = MessageClient.with_yamux(ClientConfig(f"unix:{tmp_path}/nobody.sock"))
    async with open_pool(client, max_size=1) as pool:
        for _ in range(2):  # the slot of the failed attempt is free again
            with pytest.raises(ConnectError, match=r"nobody\.sock"):
                async with pool.connection(timeout=1):
                    pass
        assert pool.size == 0


async def test_a_closed_pool_refuses_borrowers() -> None:
    client = MessageClient.with_yamux(ClientConfig("tcp://127.0.0.1:9"))
    async with open_pool(client) as pool:
        pass
    with pytest.raises(trio.ClosedResourceError, match=r"is closed"):
        async with pool.connection():
            pass
    with pytest.raises(ConfigError, match="max_size"):
        async with open_pool(client, max_size=0):
            pass
    with pytest.raises(ConfigError, match="idle_timeout"):
        async with open_pool(client, idle_timeout=0):
            pass
