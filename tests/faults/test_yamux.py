"""The fault matrix for yamux: the real Go peer (hashicorp/yamux) where it can play the fault, a
hostile in-process peer where Go never would.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       Go echo peer killed while 20 streams wait in ``receive_some``
                       and a ping waits: all fail with ConnectionLostError in 100 ms
peer restarted         does not apply here: a session is one connection with no
                       supervised handle; reconnecting over yamux is the messaging
                       row's ``connect_supervised`` (tests/faults/test_messaging.py)
connection reset       hostile peer aborts the TCP connection (RST) under a pending
                       receive
garbage bytes          hostile peer sends a frame of an unknown version: a protocol
                       error ends the session, the pending receive fails
oversize length        hostile peer announces a 0xFFFFFFFF-byte Data frame: refused
                       at once (it exceeds the window), peak RSS bounded
never answers          hostile peer reads and never answers a ping: the ping's
                       deadline fires (autojump clock)
slow reader            Go peer writes 8 MiB into a stream nobody reads: flow control
                       holds what is buffered to the stream's window
=====================  ===========================================================

Issue 17's ping-flood cell (a peer that pings and never reads keeps memory flat):
tests/channels/yamux/test_hostile.py.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast, reset
from tests.peers.yamux import Factory
from virtrio.channels._addresses import open_stream
from virtrio.channels.yamux import MuxSession, open_mux
from virtrio.errors import ConnectionLostError, ProtocolError, VirtrioTimeoutError


@asynccontextmanager
async def dial(address: str) -> AsyncIterator[MuxSession]:
    """A client session over a new connection to ``address``."""
    async with open_mux(await open_stream(address), client=True) as mux:
        yield mux


async def test_sigkill_fails_every_pending_call_fast(go_yamux: Factory) -> None:
    peer = go_yamux("echo")
    async with open_mux(await open_stream(peer.address), client=True) as mux:
        streams = [await mux.open_stream() for _ in range(20)]
        pending = iter(streams)

        async def call() -> object:
            return await next(pending).receive_some()

        await pending_calls_fail_fast(call, peer.process.kill, calls=20)
        peer.process.wait()
        with pytest.raises(ConnectionLostError):
            await mux.ping(timeout=5)
        assert not mux.is_connected


async def test_connection_reset_under_a_pending_receive() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        await stream.receive_some()  # the client's first frame
        reset(stream)
        await trio.sleep_forever()

    async with hostile_server(peer) as address, dial(address) as mux:
        stream = await mux.open_stream()
        await stream.send_all(b"hello")
        with trio.fail_after(5), pytest.raises(ConnectionLostError):
            await stream.receive_some()
        assert not mux.is_connected


async def test_garbage_bytes_end_the_session_with_a_protocol_error() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await stream.send_all(b"\x07garbage-not-yamux")
        await trio.sleep_forever()

    async with hostile_server(peer) as address, dial(address) as mux:
        stream = await mux.open_stream()
        await stream.send_all(b"x")
        with trio.fail_after(5), pytest.raises(ConnectionLostError, match="version"):
            await stream.receive_some()
        await mux.wait_closed()
        assert isinstance(mux.closed_reason, ProtocolError)


async def test_oversize_length_is_refused_at_once() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        # version 0, Data, no flags, stream 1, length 4 GiB - 1; then 32 MiB of its "body"
        await stream.send_all(struct.pack(">BBHII", 0, 0, 0, 1, 0xFFFFFFFF))
        chunk = b"\0" * MIB
        for _ in range(32):
            await stream.send_all(chunk)
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with hostile_server(peer) as address, dial(address) as mux:
            stream = await mux.open_stream()
            await stream.send_all(b"x")
            with trio.fail_after(5), pytest.raises(ConnectionLostError, match="window"):
                await stream.receive_some()
            assert isinstance(mux.closed_reason, ProtocolError)
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_a_peer_that_never_answers_a_ping(autojump_clock: trio.abc.Clock) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        while await stream.receive_some():
            pass

    async with hostile_server(peer) as address, dial(address) as mux:
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError):
            await mux.ping(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)


async def test_a_slow_reader_holds_no_more_than_its_window(go_yamux: Factory) -> None:
    peer = go_yamux("echo")
    window = 256 * 1024
    async with open_mux(await open_stream(peer.address), client=True, window=window,
                        max_window=None) as mux:  # fmt: skip
        stream = await mux.open_stream()
        payload = b"y" * (8 * MIB)
        with PeakRss() as rss:
            async with trio.open_nursery() as nursery:
                # the echo comes back into a stream that is not read: Go's writer runs out
                # of credit, so ours does too, and everything waits
                nursery.start_soon(stream.send_all, payload)
                # (the window bounds what is held at every moment; the wait only lets the
                # echo fill it first)
                await trio.testing.wait_all_tasks_blocked(cushion=0.2)
                held = sum(len(chunk) for chunk in stream._chunks)  # what it holds unread
                assert 0 < held <= window
                nursery.cancel_scope.cancel()
        assert rss.growth < 16 * MIB
