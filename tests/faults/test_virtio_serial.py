"""The fault matrix for virtio-serial (:class:`~virtrio.channels.virtio_serial.StreamReader` on
a port's host socket): a hostile in-process Unix server stands in for the port here.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       not played here yet (QEMU's chardev socket under a pending
                       ``read_line``)
peer restarted         not played here yet (the supervised ``virtio-serial`` kind)
connection reset       hostile server closes with the request unread under a
                       ``read_line``: the reader fails with ConnectionLostError (was
                       a bare trio.BrokenResourceError)
garbage bytes          not played here yet (the port carries bytes, no framing)
oversize line          hostile server streams 64 MiB with no newline: ReadLimitError
                       at ``max_size``, peak RSS bounded
never answers          hostile server reads and never writes: the read's deadline
                       fires (autojump clock)
slow reader            not played here yet
=====================  ===========================================================
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.faults.hostile import MIB, PeakRss, hostile_server
from virtrio.channels import Address, open_stream
from virtrio.channels.virtio_serial import ReadLimitError, StreamReader
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError


async def _reader(address: str) -> StreamReader:
    path = address.removeprefix("unix:")
    return StreamReader(await open_stream(Address.unix(path)), name="port")


async def test_connection_reset_under_a_read(tmp_path: Path) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        # closing a Unix stream socket with unread data resets it (ECONNRESET at the peer)
        await trio.lowlevel.wait_readable(stream.socket)
        stream.socket.close()
        await trio.sleep_forever()

    async with (
        hostile_server(peer, f"unix:{tmp_path / 'port.sock'}") as address,
        await _reader(address) as port,
    ):
        await port.send_all(b"PING\n")
        with trio.fail_after(5), pytest.raises(ConnectionLostError, match="reset"):
            await port.read_line(timeout=10)


async def test_oversize_line_is_refused_with_memory_bounded(tmp_path: Path) -> None:
    chunk = b"x" * MIB

    async def peer(stream: trio.SocketStream) -> None:
        for _ in range(64):  # 64 MiB of one line, unless the reader hangs up first
            await stream.send_all(chunk)
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with (
            hostile_server(peer, f"unix:{tmp_path / 'port.sock'}") as address,
            await _reader(address) as port,
        ):
            with trio.fail_after(10), pytest.raises(ReadLimitError, match="limit 1048576"):
                await port.read_line(timeout=30, max_size=MIB)
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_a_port_that_never_answers(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        while await stream.receive_some():
            pass

    async with (
        hostile_server(peer, f"unix:{tmp_path / 'port.sock'}") as address,
        await _reader(address) as port,
    ):
        await port.send_all(b"PING\n")
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError, match="within 30 s"):
            await port.read_line(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)
