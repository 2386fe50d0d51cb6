"""The fault matrix for messaging (MessageClient and ``connect_supervised``), over both
transports. The peer killed and restarted is ``virtrio mux serve --echo`` in its own process;
a hostile in-process server plays the faults it never would.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       the server process is killed while 10 connections wait in
                       ``receive``: all fail with ConnectionLostError within 100 ms
peer restarted         the server is killed and started again on the same socket:
                       ``connect_supervised`` carries messages again within the
                       backoff bound
connection reset       the transports' rows (tests/faults/test_xtransport.py,
garbage bytes          test_yamux.py): messaging adds no parsing of its own on
                       xtransport; on yamux it adds the 8-byte length, below
oversize length        hostile yamux server announces a 2**40-byte message: refused
                       (``max_message_size``) before it is held, peak RSS bounded
never answers          hostile server accepts and never sends: ``receive``'s deadline
                       fires (autojump clock)
slow reader            ``connect_supervised(receive_buffer=)`` is the one queue
                       messaging adds: tests/nurseries/messaging/test_supervised.py
                       holds it to its bound; below it, the transports' rows
=====================  ===========================================================
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast
from tests.faults.muxserver import MuxServer
from virtrio.channels.messaging import ClientConfig, MessageClient, MessageConnection
from virtrio.channels.yamux import open_mux
from virtrio.errors import ProtocolError, VirtrioTimeoutError
from virtrio.nurseries import Backoff
from virtrio.nurseries.messaging import connect_supervised

both = pytest.mark.parametrize("transport", ["xtransport", "yamux"])


def client_for(transport: str, address: str, **options: object) -> MessageClient:
    config = ClientConfig(address=address, **options)  # type: ignore[arg-type]
    if transport == "yamux":
        return MessageClient.with_yamux(config)
    return MessageClient.with_xtransport(config)


async def _hold(client: MessageClient, *, task_status: trio.TaskStatus[MessageConnection]) -> None:
    async with client.connect() as connection:
        await connection.send(b"hello")
        assert await connection.receive(timeout=10) == b"hello"
        task_status.started(connection)
        await trio.sleep_forever()


@both
async def test_sigkill_fails_every_pending_call_fast(tmp_path: Path, transport: str) -> None:
    server = MuxServer(f"unix:{tmp_path / 'm.sock'}", transport)
    await server.start()
    try:
        async with trio.open_nursery() as nursery:
            client = client_for(transport, server.address)
            connections = [await nursery.start(_hold, client) for _ in range(10)]
            pending = iter(connections)
            await pending_calls_fail_fast(
                lambda: next(pending).receive(timeout=30), server.kill, calls=10
            )
            nursery.cancel_scope.cancel()
    finally:
        await server.stop()


@both
async def test_restart_on_the_same_address(tmp_path: Path, transport: str) -> None:
    bound = 0.2
    server = MuxServer(f"unix:{tmp_path / 'm.sock'}", transport)
    await server.start()
    try:
        client = client_for(transport, server.address, connect_timeout=2)
        backoff = Backoff(initial=bound, maximum=bound, jitter=0)
        async with connect_supervised(client, backoff=backoff, call_timeout=10) as link:
            await link.send(b"one")
            assert await link.receive() == b"one"
            server.kill()
            await server.stop()
            await server.start()
            # the deadline is the bound: one backoff, then one connect
            await link.send(b"two", timeout=bound + 2)
            assert await link.receive(timeout=5) == b"two"
    finally:
        await server.stop()


async def _yamux_server(stream: trio.SocketStream, body: bytes) -> None:
    async with open_mux(stream, client=False) as mux:
        lane = await mux.accept_stream()
        await lane.send_all(body)
        await trio.sleep_forever()


@both
async def test_a_peer_that_never_sends(autojump_clock: trio.abc.Clock, transport: str) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        if transport == "yamux":
            await _yamux_server(stream, b"")
        while await stream.receive_some():
            pass

    async with hostile_server(peer) as address, client_for(transport, address).connect() as link:
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError):
            await link.receive(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)


async def test_oversize_yamux_message_length() -> None:
    transport = "yamux"  # xtransport's own length check is its row's

    async def peer(stream: trio.SocketStream) -> None:
        await _yamux_server(stream, struct.pack(">Q", 1 << 40) + b"q" * MIB)

    with PeakRss() as rss:
        async with hostile_server(peer) as address:
            client = client_for(transport, address, max_message_size=MIB)
            async with client.connect() as connection:
                with trio.fail_after(5), pytest.raises(ProtocolError, match="1048576"):
                    await connection.receive(timeout=5)
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"
