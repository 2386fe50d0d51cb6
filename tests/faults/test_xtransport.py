"""The fault matrix for xtransport (:func:`~virtrio.channels.xtransfer.open_xtransfer`).

Its reference peer (kylin-x-kernel/xtransfer) is not packaged; the peer killed is virtrio's own
``virtrio mux serve --transport xtransport --echo`` in another process, and a hostile
in-process peer plays every wire fault.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       the echo server process is killed while 10 channels wait in
                       ``receive``: all end within 100 ms, with EndOfChannel: xtransport
                       has no close packet, so a peer killed between messages and one
                       that closed its end look alike on the wire (killed inside a
                       message it is ConnectionLostError: the "reset" row)
peer restarted         does not apply here: a channel is one connection with no
                       supervised handle (the messaging row restarts the server under
                       ``connect_supervised``; tests/nurseries/test_xmux.py restarts it
                       under a fleet's ``mux`` channel with ``protocol: xtransport``)
connection reset       hostile peer aborts the TCP connection (RST) under a receive
garbage bytes          hostile peer sends 16 bytes that are no packet header: a bad
                       magic, named as such
oversize length        hostile peer announces a message longer than
                       ``max_message_size``: refused before a byte of it is held,
                       peak RSS bounded
never answers          hostile peer reads and never sends: the caller's deadline fires
                       (xtransport has no per-call timeout of its own; autojump clock)
slow reader            hostile peer floods 64 MiB of messages nobody receives: the
                       reader stops at ``receive_buffer`` messages, peak RSS bounded
=====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast, reset
from tests.faults.muxserver import MuxServer
from virtrio.channels import open_stream
from virtrio.channels.xtransfer import (
    XtransferChannel,
    XtransferConfig,
    XtransferError,
    XtransferMagicError,
    XtransferProtocol,
    open_xtransfer,
)
from virtrio.errors import ConnectionLostError


@asynccontextmanager
async def dial(address: str) -> AsyncIterator[XtransferChannel]:
    """An xtransport channel over a new connection to ``address``."""
    async with open_xtransfer(await open_stream(address)) as channel:
        yield channel


async def test_sigkill_fails_every_pending_call_fast(tmp_path: Path) -> None:
    server = MuxServer(f"unix:{tmp_path / 'x.sock'}", "xtransport")
    await server.start()
    try:
        async with trio.open_nursery() as nursery:
            channels = []
            for _ in range(10):
                stream = await open_stream(server.address)
                channel = await nursery.start(_hold, stream)
                channels.append(channel)
            pending = iter(channels)
            await pending_calls_fail_fast(
                lambda: next(pending).receive(), server.kill, calls=10, expected=trio.EndOfChannel
            )
            nursery.cancel_scope.cancel()
    finally:
        await server.stop()


async def _hold(stream: trio.SocketStream, *, task_status: trio.TaskStatus[object]) -> None:
    async with open_xtransfer(stream, XtransferConfig(max_frame_size=4096)) as channel:
        await channel.send(b"hello")
        assert await channel.receive() == b"hello"  # the server is there and echoes
        task_status.started(channel)
        await trio.sleep_forever()


async def test_connection_reset_under_a_receive() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        reset(stream)
        await trio.sleep_forever()

    async with hostile_server(peer) as address, dial(address) as channel:
        await channel.send(b"x")
        with trio.fail_after(5), pytest.raises(ConnectionLostError):
            await channel.receive()


async def test_garbage_bytes_are_named() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        await stream.send_all(b"GARBAGE-GARBAGE!" * 2)
        await trio.sleep_forever()

    async with hostile_server(peer) as address, dial(address) as channel:
        with trio.fail_after(5), pytest.raises(XtransferMagicError):
            await channel.receive()
        assert not channel.is_connected


async def test_oversize_length_is_refused_with_memory_bounded() -> None:
    limit = MIB

    async def peer(stream: trio.SocketStream) -> None:
        sender = XtransferProtocol(XtransferConfig(max_frame_size=65551))
        sender.send_message(b"z" * (64 * MIB))  # the head says 64 MiB; the data follows
        data = sender.data_to_send()
        for offset in range(0, len(data), MIB):
            await stream.send_all(data[offset : offset + MIB])
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with hostile_server(peer) as address:
            config = XtransferConfig(max_frame_size=65551, max_message_size=limit)
            async with open_xtransfer(await open_stream(address), config) as channel:
                with trio.fail_after(10), pytest.raises(XtransferError, match="1048576"):
                    await channel.receive()
    # the peer's own 64 MiB message and its encoding are this process's too: bound the rest
    assert rss.growth < 160 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_a_peer_that_never_sends(autojump_clock: trio.abc.Clock) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        while await stream.receive_some():
            pass

    async with hostile_server(peer) as address, dial(address) as channel:
        await channel.send(b"x")
        with pytest.raises(trio.TooSlowError), trio.fail_after(30):
            await channel.receive()
        assert channel.is_connected  # the caller's deadline is not the connection's


async def test_a_slow_reader_stops_reading_at_its_buffer() -> None:
    sent: list[int] = []

    async def peer(stream: trio.SocketStream) -> None:
        sender = XtransferProtocol(XtransferConfig(max_frame_size=65551))
        for _ in range(64):
            sender.send_message(b"m" * MIB)
            await stream.send_all(sender.data_to_send())
            sent.append(1)
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with hostile_server(peer) as address:
            stream = await open_stream(address)
            async with open_xtransfer(stream, XtransferConfig(max_frame_size=65551),
                                      receive_buffer=4) as channel:  # fmt: skip
                await trio.testing.wait_all_tasks_blocked(cushion=0.1)
                # 4 buffered, one being parsed, the socket buffers full: the peer is held up
                assert len(sent) < 64
                assert await channel.receive() == b"m" * MIB
    assert rss.growth < 32 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"
