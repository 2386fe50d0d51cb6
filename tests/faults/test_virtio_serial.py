"""The fault matrix for virtio-serial (:class:`~virtrio.channels.virtio_serial.StreamReader` on
a port's host socket): real QEMU (a paused PC with virtserialports on chardev sockets) where it
can play the fault, a hostile in-process Unix server where it cannot.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       real QEMU, 3 ports each under a pending ``read_line``, then
                       SIGKILL: all fail with ConnectionLostError within 100 ms
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

import itertools
from pathlib import Path

import attrs
import pytest
import trio

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast
from tests.peers.qemu import PC
from virtrio.channels import Address, open_stream
from virtrio.channels.qmp import open_qmp
from virtrio.channels.virtio_serial import ReadLimitError, StreamReader
from virtrio.engine.guest import open_qemu
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError


async def _reader(address: str) -> StreamReader:
    path = address.removeprefix("unix:")
    return StreamReader(await open_stream(Address.unix(path)), name="port")


async def test_sigkill_fails_every_pending_read_fast(qemu_binary: str, tmp_path: Path) -> None:
    ports = 3
    args: list[str] = ["-device", "virtio-serial"]
    for n in range(ports):
        args += ["-chardev", f"socket,id=p{n},path={tmp_path}/p{n}.sock,server=on,wait=off"]
        args += ["-device", f"virtserialport,chardev=p{n},name=org.virtrio.p{n}"]
    machine = attrs.evolve(PC, extra_args=(*PC.extra_args, *args))
    async with open_qemu(machine, workdir=tmp_path / "qemu") as qemu:
        async with open_qmp(qemu.qmp_address) as qmp:  # QMP answers once every chardev is up
            await qmp.query_status()
        readers = [await _reader(f"unix:{tmp_path}/p{n}.sock") for n in range(ports)]
        each = itertools.cycle(readers)
        try:
            await pending_calls_fail_fast(
                lambda: next(each).read_line(timeout=30), qemu.kill, calls=ports
            )
        finally:
            for reader in readers:
                await reader.aclose()


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
