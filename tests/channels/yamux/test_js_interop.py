"""virtrio's yamux against a second independent implementation: @chainsafe/libp2p-yamux, the
multiplexer of js-libp2p (it splits Data frames at 64 KiB, grows its windows itself, and closes
and resets streams its own way), over loopback TCP and Unix sockets, in both roles."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from tests.peers.yamux_js import JsFactory
from virtrio.channels._addresses import open_stream
from virtrio.channels.yamux import StreamResetError, open_mux

from .test_go_interop import (
    MiB,
    accept_all,
    listening,
    payloads,
    receive_all,
    receive_exactly,
    send_chunks,
)

pytestmark = pytest.mark.parametrize("transport", ["tcp", "unix"])


async def test_100_streams_echoed_by_js(js_yamux: JsFactory, transport: str) -> None:
    peer = js_yamux("echo", transport=transport)
    async with open_mux(await open_stream(peer.address), client=True) as session:

        async def one(payload: bytes) -> None:
            stream = await session.open_stream()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_chunks, stream, payload)
                echoed = await receive_exactly(stream, len(payload))
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            await stream.send_eof()
            assert await stream.receive_some() == b""  # JS ends its side after ours
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            for payload in payloads(100, MiB):
                nursery.start_soon(one, payload)


async def test_100_js_streams_echoed_by_virtrio(
    js_yamux: JsFactory, transport: str, tmp_path: Path
) -> None:
    async with (
        listening(tmp_path, transport) as (listener, address),
        trio.open_nursery() as nursery,
    ):
        client = js_yamux("echo", connect=address, streams=100, bytes=MiB)

        async def serve() -> None:
            async with open_mux(await listener.accept(), client=False) as server:
                await accept_all(server)

        nursery.start_soon(serve)
        status, out = await trio.to_thread.run_sync(client.wait, 60)
        assert (status, out) == (0, f"echoed 100 x {MiB}\n")  # JS checked every SHA-256
        nursery.cancel_scope.cancel()


async def test_half_close_then_reply_after_fin(js_yamux: JsFactory, transport: str) -> None:
    peer = js_yamux("sink", transport=transport)
    payload = payloads(1, 3 * MiB)[0]
    async with open_mux(await open_stream(peer.address), client=True) as session:
        stream = await session.open_stream()
        await send_chunks(stream, payload)
        await stream.send_eof()
        reply = (await receive_all(stream)).decode()
        assert reply == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}"


async def test_pings_each_way(js_yamux: JsFactory, transport: str, tmp_path: Path) -> None:
    peer = js_yamux("echo", transport=transport)
    async with open_mux(await open_stream(peer.address), client=True) as session:
        for _ in range(100):
            assert 0 <= await session.ping(timeout=5) < 5
    async with (
        listening(tmp_path, transport) as (listener, address),
        trio.open_nursery() as nursery,
    ):
        pinger = js_yamux("ping", connect=address, count=100)

        async def serve() -> None:
            async with open_mux(await listener.accept(), client=False) as server:
                await server.wait_closed()
                assert server.pings_answered == 100

        nursery.start_soon(serve)
        assert await trio.to_thread.run_sync(pinger.wait, 30) == (0, "pinged 100\n")


async def test_reset_by_js_and_seen_by_js(js_yamux: JsFactory, transport: str) -> None:
    resetter = js_yamux("reset", transport=transport)
    async with open_mux(await open_stream(resetter.address), client=True) as session:
        stream = await session.open_stream()
        await stream.send_all(b"hello?")
        with trio.fail_after(5), pytest.raises(StreamResetError):
            await receive_all(stream)
        with pytest.raises(StreamResetError):
            await stream.send_all(b"x")
    peer = js_yamux("echo", transport=transport)
    async with open_mux(await open_stream(peer.address), client=True) as session:
        stream = await session.open_stream()
        await stream.send_all(b"abc")
        assert await receive_exactly(stream, 3) == b"abc"
        await stream.reset()
        line = await trio.to_thread.run_sync(peer.read_line)
        assert line.startswith(f"stream {stream.stream_id} failed: "), line
        other = await session.open_stream()  # the session is unharmed
        await other.send_all(b"ok")
        await other.send_eof()
        assert await receive_all(other) == b"ok"
