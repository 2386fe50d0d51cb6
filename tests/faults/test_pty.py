"""The fault matrix for the PTY daemon and its client SDK: the real daemon (``virtrio
pty-daemon`` in its own process where it must die, in this process where its memory is
measured), and a hostile in-process daemon where the real one never misbehaves.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       the daemon process stopped (SIGSTOP) under 10 pending ``list``
                       calls, then SIGKILL: all fail with ConnectionLostError in 100 ms
peer restarted         does not apply: the PTY client is one connection with no
                       supervised handle (its sessions die with the daemon anyway)
connection reset       hostile daemon (a Unix socket, as the client dials only those)
                       closes with the request unread under a call: the client's
                       read gets ECONNRESET
garbage bytes          a frame that is not MessagePack sent to the real daemon: an
                       ``invalid_msgpack`` error reply, and the connection is kept
oversize length        a 0xFFFFFFFF length prefix sent to the real daemon: refused at
                       once (the connection is closed), daemon RSS bounded
never answers          hostile daemon reads and never replies: the per-call deadline
                       fires (autojump clock)
slow reader            a client attached to a flooding session stops reading: another
                       client of the session gets all 4 MB in time; the slow one's
                       queue stays at its bound, its drops and a red warning are
                       counted while it still does not read, and the red
                       warning naming them is the first thing it reads when it
                       resumes (the byte bound is issue 17's, item 3)
=====================  ===========================================================

Issue 17's daemon cells: tests/channels/pty/test_codec.py (a map with an array key is
``invalid_msgpack``, the connection kept) and tests/engine/pty/test_flow_memory.py (a
never-reading subscriber holds a byte-bounded queue, memory returned after it goes).
"""

from __future__ import annotations

import os
import signal
import struct
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast
from tests.faults.muxserver import PtyDaemonProcess
from virtrio.channels import Address, open_stream
from virtrio.channels.pty import BackpressureWarning, Exit, open_pty_client
from virtrio.engine.pty import PtyDaemon, PtyDaemonConfig, serve_pty_daemon
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError


async def test_sigkill_fails_every_pending_call_fast(tmp_path: Path) -> None:
    daemon = PtyDaemonProcess(str(tmp_path / "pty.sock"))
    await daemon.start()
    try:
        async with open_pty_client(daemon.socket_path) as client:
            assert await client.list() == ()
            assert daemon.process is not None
            os.kill(daemon.process.pid, signal.SIGSTOP)
            await pending_calls_fail_fast(lambda: client.list(timeout=30), daemon.kill, calls=10)
    finally:
        await daemon.stop()


async def test_connection_reset_under_a_call(tmp_path: Path) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        # closing a Unix stream socket with unread data resets it (ECONNRESET at the peer)
        await trio.lowlevel.wait_readable(stream.socket)
        stream.socket.close()
        await trio.sleep_forever()

    async with (
        hostile_server(peer, f"unix:{tmp_path / 'pty.sock'}") as address,
        open_pty_client(address) as client,
    ):
        with trio.fail_after(5), pytest.raises(ConnectionLostError, match="reset"):
            await client.list(timeout=10)


async def test_garbage_frames_get_an_error_and_keep_the_connection(pty_daemon: PtyDaemon) -> None:
    async with await open_stream(Address.unix(pty_daemon.socket_path)) as stream:
        await stream.send_all(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # 0xc1 is never MessagePack
        reply = await _frame(stream)
        assert b"invalid_msgpack" in reply
        await stream.send_all(b"\x00\x00\x00\x0b\x81\xa4type\xa4list")  # {"type": "list"}
        assert b"sessions" in await _frame(stream)
    assert pty_daemon.statistics().bad_frames == 1


async def test_oversize_length_is_refused_with_memory_bounded(pty_daemon: PtyDaemon) -> None:
    with PeakRss() as rss:
        async with await open_stream(Address.unix(pty_daemon.socket_path)) as stream:
            await stream.send_all(struct.pack(">I", 0xFFFFFFFF))
            with trio.fail_after(5):
                received = b""
                while data := await _receive_or_end(stream):
                    received += data  # an error reply may come first; then the end
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"
    assert pty_daemon.statistics().bad_frames == 1


async def test_a_daemon_that_never_answers(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        while await stream.receive_some():
            pass

    async with (
        hostile_server(peer, f"unix:{tmp_path / 'pty.sock'}") as address,
        open_pty_client(address) as client,
    ):
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError):
            await client.list(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)


async def test_a_slow_reader_is_warned_and_slows_no_one(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig
) -> None:
    # the bound (4 MiB) is half the flood: the stalled one overflows for sure, while the reader
    # may lag by that much before its own queue would drop anything
    config = attrs.evolve(pty_config, max_queue_size=512, flow_threshold=128)
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    flood = "head -c 8000000 /dev/zero | od -v | head -c 8000000; echo; echo done"
    async with (
        open_pty_client(daemon.socket_path, max_queue=1) as stalled,
        open_pty_client(daemon.socket_path) as reader,
    ):
        with stalled.events() as stalled_events, reader.events() as reader_events:
            sid = await reader.create(command="/bin/sh", args=["-c", f"read go; {flood}"])
            await stalled.attach(sid)
            await reader.attach(sid)
            await reader.input(sid, b"\n")
            received = 0
            with trio.fail_after(60):
                while not isinstance(event := await reader_events.receive(), Exit):
                    received += len(getattr(event, "data", b""))
            assert event.session == sid
            assert received > 8_000_000, received  # the reader got everything, in time
            # the policy acted as the stalled one's queue filled, before it reads again
            while_stalled = daemon.statistics()
            assert while_stalled.red_warnings >= 1
            assert while_stalled.chunks_dropped >= 1
            # the slow one reads at last: what it missed is counted, and it is told, in red
            warnings, missed = [], 0
            with trio.fail_after(30):
                while not isinstance(event := await stalled_events.receive(), Exit):
                    if isinstance(event, BackpressureWarning):
                        warnings.append(event)
                    else:
                        missed -= len(getattr(event, "data", b""))
            missed += received
            assert any(w.level.value == "red" and w.dropped for w in warnings), warnings
            assert missed > 0
            assert daemon.statistics().chunks_dropped == while_stalled.chunks_dropped


async def _frame(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = await stream.receive_some()
            assert chunk, "the daemon closed the connection"
            data += chunk
    return data[4:]


async def _receive_or_end(stream: trio.abc.ReceiveStream) -> bytes:
    try:
        return await stream.receive_some()
    except trio.BrokenResourceError:
        return b""
