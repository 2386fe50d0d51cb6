"""connect_supervised: reconnect with backoff, health checks, nothing received is lost.

Real sockets with a real (short) clock: autojump would also skip over socket waits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from tests.channels.messaging.helpers import echo, running
from virtrio.channels import Address, open_listeners
from virtrio.channels.messaging import (
    ClientConfig,
    HealthCheck,
    HealthCheckError,
    MessageClient,
    MessageConnection,
    MessageServer,
    ServerConfig,
    Transport,
    with_xtransport,
    with_yamux,
)
from virtrio.errors import (
    ChannelUnavailableError,
    ConfigError,
    ConnectError,
    LocalProtocolError,
    VirtrioTimeoutError,
)
from virtrio.nurseries.messaging import connect_supervised
from virtrio.primitives import Backoff, ChannelState, StateChange, Subscription

FAST = Backoff(initial=0.05, maximum=0.2, jitter=0)
Handler = Callable[[MessageConnection], Awaitable[object]]


class Restartable:
    """A MessageServer that can be stopped and started again on the same address."""

    def __init__(self, nursery: trio.Nursery, transport: Transport, handler: Handler = echo):
        self._nursery = nursery
        self.transport = transport
        self.handler = handler
        self._scope = trio.CancelScope()
        self.address: Address | None = None

    async def start(self, listen: str | None = None) -> Address:
        where = listen if listen is not None else str(self.address)
        self._scope = trio.CancelScope()
        [self.address] = await self._nursery.start(self._serve, where)
        return self.address

    async def _serve(self, listen: str, *, task_status: trio.TaskStatus[list[Address]]) -> None:
        with self._scope:
            server = MessageServer(ServerConfig(listen), self.transport)
            await server.serve(self.handler, task_status=task_status)

    def stop(self) -> None:
        self._scope.cancel()


async def wait_for(states: Subscription[StateChange], state: ChannelState) -> StateChange:
    with trio.fail_after(10):
        while (change := await states.receive()).state is not state:
            pass
    return change


async def test_a_send_waits_through_an_outage_and_reaches_the_restarted_server(
    listen_address: str, transport: Transport
) -> None:
    async with trio.open_nursery() as nursery:
        server = Restartable(nursery, transport)
        address = await server.start(listen_address)
        client = MessageClient(ClientConfig(address, connect_timeout=2), transport)
        async with connect_supervised(client, backoff=FAST, call_timeout=10) as link:
            with link.state_changes() as states:
                await link.send(b"before")
                assert await link.receive() == b"before"
                first = link.connection
                server.stop()
                down = await wait_for(states, ChannelState.DISCONNECTED)
                assert down.error is not None
                await wait_for(states, ChannelState.RECONNECTING)
                async with trio.open_nursery() as sending:
                    sending.start_soon(link.send, b"during")
                    await trio.testing.wait_all_tasks_blocked()  # the send waits: no server
                    assert link.state is not ChannelState.CONNECTED
                    await server.start()
                assert await link.receive() == b"during"
                assert link.state is ChannelState.CONNECTED
                assert link.connection is not first
        nursery.cancel_scope.cancel()


async def test_every_message_received_is_delivered_also_after_its_connection_ended(
    listen_address: str, transport: Transport
) -> None:
    """The server sends a burst and hangs up; the client reads it all later, then the next
    connection's messages, in order."""
    rounds = 0

    async def burst(connection: MessageConnection) -> None:
        nonlocal rounds
        rounds += 1
        for i in range(20):
            await connection.send(b"%d-%d" % (rounds, i))
        await connection.disconnect()

    async with trio.open_nursery() as nursery:
        server = Restartable(nursery, transport, burst)
        address = await server.start(listen_address)
        client = MessageClient(ClientConfig(address), transport)
        async with connect_supervised(
            client, backoff=FAST, receive_buffer=100, call_timeout=10
        ) as link:
            with link.state_changes() as states:
                await wait_for(states, ChannelState.DISCONNECTED)  # the first one is over
            got = [await link.receive() for _ in range(40)]
        nursery.cancel_scope.cancel()
    assert got == [b"%d-%d" % (r, i) for r in (1, 2) for i in range(20)]


async def test_a_full_buffer_holds_the_server_back_instead_of_dropping() -> None:
    sent = 0

    async def firehose(connection: MessageConnection) -> None:
        nonlocal sent
        while True:
            await connection.send(b"x" * 1000)
            sent += 1

    server = MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0"))
    async with running(server, firehose) as address:
        client = MessageClient.with_yamux(ClientConfig(address))
        async with connect_supervised(client, receive_buffer=4, call_timeout=5) as link:
            # the server runs in this process: every task blocks only if it is held up (a
            # buffer that dropped would let the firehose run on, and this wait time out)
            with trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked()
            # 4 messages buffered here, the rest held by yamux's window (256 KiB) and sockets
            assert 4 <= sent < 4 + 2 * 262144 // 1008 + 600
            stalled = sent
            await trio.testing.wait_all_tasks_blocked()
            assert sent == stalled
            for _ in range(stalled):
                assert await link.receive() == b"x" * 1000
            assert link.state is ChannelState.CONNECTED


async def test_calls_fail_clearly_while_the_server_stays_down(tmp_path: object) -> None:
    client = MessageClient.with_yamux(ClientConfig(f"unix:{tmp_path}/nobody.sock"))
    async with connect_supervised(client, backoff=FAST) as link:
        with pytest.raises(ChannelUnavailableError, match=r"not connected after 0\.3 s") as info:
            await link.send(b"x", timeout=0.3)
        assert isinstance(info.value.last_error, ConnectError)
        assert "nobody.sock" in str(info.value.last_error)
        assert link.connection is None
        with pytest.raises(
            VirtrioTimeoutError,
            match=r"waiting for a message on unix:.*nobody.sock: nothing in 0\.1 s",
        ):
            await link.receive(timeout=0.1)


async def test_a_connection_that_stops_answering_pings_is_replaced() -> None:
    """A server that accepts and then never reads: yamux's connect does not wait for it, but
    the ping of the health check goes unanswered."""
    accepted = 0

    async def black_hole(stream: trio.SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        await trio.sleep_forever()

    listeners = await open_listeners("tcp://127.0.0.1:0")
    host, port = listeners[0].socket.getsockname()[:2]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, black_hole, listeners)
        client = MessageClient.with_yamux(ClientConfig(f"tcp://{host}:{port}"))
        check = HealthCheck(interval=0.1, timeout=0.2)
        async with connect_supervised(client, backoff=FAST, health_check=check) as link:
            with link.state_changes() as states:
                down = await wait_for(states, ChannelState.DISCONNECTED)
                assert isinstance(down.error, HealthCheckError)
                assert "no answer in 0.2 s" in str(down.error)
                await wait_for(states, ChannelState.CONNECTED)
        assert accepted >= 2
        nursery.cancel_scope.cancel()


async def test_a_healthy_connection_is_kept_and_a_failing_probe_replaces_it(
    listen_address: str,
) -> None:
    verdicts = [True, True, False]
    probed: list[Address] = []

    async def probe(connection: MessageConnection) -> None:
        probed.append(connection.peer)
        if not verdicts.pop(0):
            raise ConnectionError("the application says no")

    transport = with_xtransport()
    server = MessageServer(ServerConfig(listen_address), transport)
    async with running(server) as address:
        client = MessageClient(ClientConfig(address), transport)
        check = HealthCheck(interval=0.05, timeout=1, probe=probe)
        async with connect_supervised(client, backoff=FAST, health_check=check) as link:
            with link.state_changes() as states:
                first = link.connection
                down = await wait_for(states, ChannelState.DISCONNECTED)
                assert len(probed) == 3
                assert "the application says no" in str(down.error)
                await wait_for(states, ChannelState.CONNECTED)
                assert link.connection is not first
                await link.send(b"still works", timeout=5)
                assert await link.receive(timeout=5) == b"still works"


async def test_yamux_pings_are_the_default_probe() -> None:
    server = MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0"))
    async with running(server) as address:
        client = MessageClient.with_yamux(ClientConfig(address))
        async with client.connect() as connection:
            assert connection.can_ping
            assert 0 < await connection.ping(timeout=5) < 5
            await HealthCheck(timeout=5).check(connection)
        assert not connection.is_connected
        with pytest.raises(HealthCheckError, match="is down"):
            await HealthCheck().check(connection)


async def test_xtransport_has_no_ping_so_only_liveness_is_checked() -> None:
    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:0"))
    async with (
        running(server) as address,
        MessageClient.with_xtransport(ClientConfig(address)).connect() as connection,
    ):
        assert not connection.can_ping
        with pytest.raises(LocalProtocolError, match="xtransport has no ping"):
            await connection.ping()
        await HealthCheck().check(connection)


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"HealthCheck\.interval"):
        HealthCheck(interval=0)
    with pytest.raises(ConfigError, match=r"HealthCheck\.timeout"):
        HealthCheck(timeout=-1)


async def test_bad_supervision_options_raise_config_errors() -> None:
    client = MessageClient(ClientConfig("tcp://127.0.0.1:9"), with_yamux())
    with pytest.raises(ConfigError, match="receive_buffer"):
        async with connect_supervised(client, receive_buffer=0):
            pass
    with pytest.raises(ConfigError, match="call_timeout"):
        async with connect_supervised(client, call_timeout=0):
            pass
