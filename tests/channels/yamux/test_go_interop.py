"""virtrio's yamux against the reference Go implementation (hashicorp/yamux), over loopback TCP
and Unix sockets, in both roles."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.peers.yamux import Factory, GoYamux
from virtrio.channels._addresses import open_listeners, open_stream
from virtrio.channels.yamux import (
    MuxSession,
    MuxStream,
    SessionLostError,
    StreamResetError,
    open_mux,
)
from virtrio.errors import ConnectionLostError, LocalProtocolError

MiB = 1024 * 1024

pytestmark = pytest.mark.parametrize("transport", ["tcp", "unix"])


@asynccontextmanager
async def connect(peer: GoYamux, **options: int) -> AsyncIterator[MuxSession]:
    async with open_mux(await open_stream(peer.address), client=True, **options) as session:
        yield session


async def send_chunks(stream: MuxStream, payload: bytes, chunk: int = 64 * 1024) -> None:
    view = memoryview(payload)
    for offset in range(0, len(view), chunk):
        await stream.send_all(view[offset : offset + chunk])


async def receive_exactly(stream: MuxStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        data = await stream.receive_some()
        assert data, f"EOF after {len(got)} of {size} bytes"
        got += data
    return bytes(got)


async def receive_all(stream: MuxStream) -> bytes:
    got = bytearray()
    while data := await stream.receive_some():
        got += data
    return bytes(got)


def payloads(count: int, size: int) -> list[bytes]:
    block = os.urandom(size + count)
    return [block[i : i + size] for i in range(count)]


@pytest.mark.slow
async def test_1000_streams_echoed_by_go(go_yamux: Factory, transport: str) -> None:
    peer = go_yamux("echo", transport=transport)
    sent = payloads(1000, MiB)
    async with connect(peer) as session:

        async def one(payload: bytes) -> None:
            stream = await session.open_stream()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_chunks, stream, payload)
                echoed = await receive_exactly(stream, len(payload))
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            await stream.send_eof()
            assert await stream.receive_some() == b""
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            for payload in sent:
                nursery.start_soon(one, payload)


@asynccontextmanager
async def listening(
    tmp_path: Path, transport: str
) -> AsyncIterator[tuple[trio.SocketListener, str]]:
    """A virtrio listener and its address as the Go peer spells it."""
    path = tmp_path / "virtrio.sock"
    listeners = await open_listeners(f"unix:{path}" if transport == "unix" else "tcp://127.0.0.1:0")
    try:
        if transport == "tcp":
            host, port = listeners[0].socket.getsockname()[:2]
            yield listeners[0], f"tcp:{host}:{port}"
        else:
            yield listeners[0], f"unix:{path}"
    finally:
        for listener in listeners:
            await listener.aclose()


async def accept_all(session: MuxSession) -> None:
    """Echo every stream until the Go client ends the connection (it checks every byte)."""
    async with trio.open_nursery() as streams:
        while True:
            try:
                stream = await session.accept_stream()
            except ConnectionLostError:
                return  # the client is done: it closes the socket without a GoAway
            streams.start_soon(echo, stream)


async def echo(stream: MuxStream) -> None:
    # a stream still finishing when the client drops the connection ends with its session
    # (SessionLostError), or is reset if the client reset it first
    with contextlib.suppress(StreamResetError, SessionLostError):
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.aclose()


@pytest.mark.slow
async def test_1000_go_streams_echoed_by_virtrio(
    go_yamux: Factory, transport: str, tmp_path: Path
) -> None:
    async with (
        listening(tmp_path, transport) as (listener, address),
        trio.open_nursery() as nursery,
    ):
        peer = go_yamux("echo", connect=address, streams=1000, bytes=MiB)

        async def serve() -> None:
            transport_stream = await listener.accept()
            async with open_mux(transport_stream, client=False) as session:
                await accept_all(session)

        nursery.start_soon(serve)
        status, output = await trio.to_thread.run_sync(peer.wait, 120)
        nursery.cancel_scope.cancel()
    assert (status, output.strip()) == (0, f"echoed 1000 x {MiB}")


async def test_half_close_then_reply_after_fin(go_yamux: Factory, transport: str) -> None:
    peer = go_yamux("sink", transport=transport)
    payload = os.urandom(300_000)
    async with connect(peer) as session:
        stream = await session.open_stream()
        await stream.send_all(payload)
        await stream.send_eof()
        reply = await receive_all(stream)  # sent by Go after it read our FIN
    assert reply.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


async def test_slow_go_reader_is_never_overrun(go_yamux: Factory, transport: str) -> None:
    # hashicorp ends the session (ErrRecvWindowExceeded) if we ever send past its window
    peer = go_yamux("slow", transport=transport, chunk=16384, delay="1ms")
    payload = os.urandom(2 * MiB)
    async with connect(peer) as session:
        slow = await session.open_stream()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_chunks, slow, payload)
                # the session stays responsive while the slow stream is stalled on credit
                for _ in range(5):
                    await session.ping()
            await slow.send_eof()
            reply = await receive_all(slow)
    assert reply.decode() == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


async def test_large_windows(go_yamux: Factory, transport: str) -> None:
    window = 16 * MiB  # hashicorp then sends Data frames of up to 16 MiB
    peer = go_yamux("echo", transport=transport, window=window)
    payload = os.urandom(48 * MiB)
    async with connect(peer, window=window) as session:
        stream = await session.open_stream()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, payload)
            echoed = await receive_exactly(stream, len(payload))
    assert echoed == payload


async def test_100_pings_each_way(go_yamux: Factory, transport: str, tmp_path: Path) -> None:
    peer = go_yamux("echo", transport=transport)
    async with connect(peer) as session:
        for _ in range(100):
            assert 0 <= await session.ping() < 5
    async with (
        listening(tmp_path, transport) as (listener, address),
        trio.open_nursery() as nursery,
    ):
        pinger = go_yamux("ping", connect=address, count=100)

        async def serve() -> None:
            async with open_mux(await listener.accept(), client=False) as server:
                await server.wait_closed()

        nursery.start_soon(serve)
        assert await trio.to_thread.run_sync(pinger.wait, 30) == (0, "pinged 100\n")
        nursery.cancel_scope.cancel()


async def test_go_keepalive_is_answered(go_yamux: Factory, transport: str) -> None:
    # Go pings every 50 ms and drops the session if an answer takes over 300 ms
    peer = go_yamux("echo", transport=transport, keepalive="50ms", write_timeout="300ms")
    async with connect(peer) as session:
        await trio.sleep(1.5)  # the thing tested: Go's own clock pings through this stretch
        stream = await session.open_stream()
        await stream.send_all(b"still there?")
        await stream.send_eof()
        assert await receive_all(stream) == b"still there?"
        assert session.is_connected
        assert session.pings_answered >= 10  # Go really pinged: about 30 in 1.5 s


async def test_pings_are_answered_promptly_under_load(go_yamux: Factory, transport: str) -> None:
    """16 streams echo 8 MiB each through Go while both sides ping: every ping, ours and
    Go's keepalives (which drop the session if unanswered in 2 s), comes back in time."""
    peer = go_yamux("echo", transport=transport, keepalive="100ms", write_timeout="2s")
    sent = payloads(16, 8 * MiB)
    async with connect(peer) as session:
        done = trio.Event()

        async def one(payload: bytes) -> None:
            stream = await session.open_stream()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_chunks, stream, payload)
                assert await receive_exactly(stream, len(payload)) == payload
            await stream.aclose()

        async def load() -> None:
            async with trio.open_nursery() as nursery:
                for payload in sent:
                    nursery.start_soon(one, payload)
            done.set()

        rtts: list[float] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load)
            while not done.is_set():
                rtts.append(await session.ping(timeout=2))
                await trio.sleep(0.01)  # pacing our pings under the load, not a wait for it
        assert len(rtts) >= 3, "the load ended before it could be pinged"
        assert session.is_connected
        assert session.pings_answered >= 1


async def test_go_away_from_go(go_yamux: Factory, transport: str) -> None:
    peer = go_yamux("goaway", transport=transport)
    async with connect(peer) as session:
        in_flight = await session.open_stream()
        await in_flight.send_all(b"finish me")
        await in_flight.send_eof()
        assert await receive_all(in_flight) == b"finish me"  # Go answers after its GoAway
        assert peer.read_line() == "goaway sent"
        with trio.fail_after(1), pytest.raises(LocalProtocolError, match="GoAway"):
            await session.open_stream()
        assert session.is_connected


async def test_reset_by_go(go_yamux: Factory, transport: str) -> None:
    # a Go server that never accepts, with a backlog of 1, resets the second stream
    peer = go_yamux("noaccept", transport=transport, backlog=1)
    async with connect(peer) as session:
        await session.open_stream()
        refused = await session.open_stream()
        with trio.fail_after(5), pytest.raises(StreamResetError):
            await refused.receive_some()
        with pytest.raises(StreamResetError):
            await refused.send_all(b"x")


async def test_reset_seen_by_go(go_yamux: Factory, transport: str) -> None:
    peer = go_yamux("echo", transport=transport)
    async with connect(peer) as session:
        stream = await session.open_stream()
        await stream.send_all(b"abc")
        assert await receive_exactly(stream, 3) == b"abc"
        await stream.reset()
        line = await trio.to_thread.run_sync(peer.read_line)
        assert line.startswith(f"reset {stream.stream_id} after 3: ")
        # the session is unharmed
        other = await session.open_stream()
        await other.send_all(b"ok")
        await other.send_eof()
        assert await receive_all(other) == b"ok"
