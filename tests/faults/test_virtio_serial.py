"""The fault matrix for virtio-serial (:class:`~virtrio.channels.virtio_serial.StreamReader` on
a port's host socket): real QEMU (a paused PC with virtserialports on chardev sockets) where it
can play the fault, a hostile in-process Unix server where it cannot.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       real QEMU, 3 ports each under a pending ``read_line``, then
                       SIGKILL: all fail with ConnectionLostError within 100 ms
peer restarted         real QEMU killed and started again on the same port socket: the
                       supervised ``virtio-serial`` channel (open_vm channels=) reports
                       DISCONNECTED, then sends again within one backoff (0.2 s)
connection reset       hostile server closes with the request unread under a
                       ``read_line``: the reader fails with ConnectionLostError (was
                       a bare trio.BrokenResourceError)
garbage bytes          hostile echo server (no guest program to answer on a real port):
                       every byte value and 1 MiB of noise come back intact; a line
                       ends at 0x0a only
oversize line          hostile server streams 64 MiB with no newline: ReadLimitError
                       at ``max_size``, peak RSS bounded
never answers          hostile server reads and never writes: the read's deadline
                       fires (autojump clock)
slow reader            hostile server floods 64 MiB while the reader stalls: the
                       peer blocks in its first send (socket backpressure), then every
                       byte arrives in order (sha256), peak RSS bounded
=====================  ===========================================================
"""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast
from tests.peers.qemu import PC
from virtrio.channels import Address, open_stream
from virtrio.channels.qmp import open_qmp
from virtrio.channels.virtio_serial import ReadLimitError, StreamReader
from virtrio.engine.guest import QemuMachine, open_qemu
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
from virtrio.nurseries import Backoff, ChannelState, open_vm


async def _reader(address: str) -> StreamReader:
    path = address.removeprefix("unix:")
    return StreamReader(await open_stream(Address.unix(path)), name="port")


async def test_sigkill_fails_every_pending_read_fast(qemu_binary: str, tmp_path: Path) -> None:
    ports = 3
    machine = _with_ports(tmp_path, ports)
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


def _with_ports(tmp_path: Path, ports: int) -> QemuMachine:
    """The bare PC with ``ports`` virtserialports, each on the chardev socket ``pN.sock``."""
    args: list[str] = ["-device", "virtio-serial"]
    for n in range(ports):
        args += ["-chardev", f"socket,id=p{n},path={tmp_path}/p{n}.sock,server=on,wait=off"]
        args += ["-device", f"virtserialport,chardev=p{n},name=org.virtrio.p{n}"]
    return attrs.evolve(PC, extra_args=(*PC.extra_args, *args))


async def test_restart_on_the_same_address(tmp_path: Path) -> None:
    bound = 0.2  # the backoff's maximum: a restarted peer is retried at least this often
    fast = lambda: Backoff(initial=bound, maximum=bound, jitter=0)  # noqa: E731
    machine = _with_ports(tmp_path, 1)
    workdir = tmp_path / "qemu"
    port = {"kind": "virtio-serial", "address": f"unix:{tmp_path}/p0.sock"}
    async with open_qemu(machine, workdir=workdir) as first:
        async with open_qmp(first.qmp_address) as qmp:  # QMP answers once every chardev is up
            await qmp.query_status()
        async with open_vm("v", channels={"p0": port}, backoff=fast, connect_timeout=2) as vm:
            await vm.line("p0").send(b"before\n", timeout=10)
            with vm.state_changes() as changes:
                first.kill()
                await first.wait()
                with trio.fail_after(5):
                    while (await changes.receive()).state is not ChannelState.DISCONNECTED:
                        pass
            async with open_qemu(machine, workdir=workdir) as second:
                async with open_qmp(second.qmp_address) as qmp:
                    await qmp.query_status()
                # the deadline is the bound: one backoff, then one connect
                await vm.line("p0").send(b"after\n", timeout=bound + 2)
                assert vm.channel_states()["p0"] is ChannelState.CONNECTED


async def test_a_slow_reader_back_pressures_a_flood_and_loses_nothing(tmp_path: Path) -> None:
    chunks = 64
    sent = 0
    started = trio.Event()

    def chunk(n: int) -> bytes:
        return random.Random(n).randbytes(MIB)

    async def peer(stream: trio.SocketStream) -> None:
        nonlocal sent
        started.set()
        for n in range(chunks):  # 64 MiB as fast as the socket takes it
            await stream.send_all(chunk(n))
            sent += 1
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with (
            hostile_server(peer, f"unix:{tmp_path / 'port.sock'}") as address,
            await _reader(address) as port,
        ):
            await started.wait()
            await trio.testing.wait_all_tasks_blocked()  # the peer is stuck in a send
            assert sent < 2, "the flood went through with nobody reading"  # < 1 MiB buffered
            want = hashlib.sha256()
            for n in range(chunks):
                want.update(chunk(n))
            got = hashlib.sha256()
            size = 0
            with trio.fail_after(60):
                while size < chunks * MIB:
                    data = await port.receive_some(65536)
                    assert data, f"port closed after {size} bytes"
                    got.update(data)
                    size += len(data)
            assert size == chunks * MIB
            assert got.digest() == want.digest()  # every byte, in order
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_garbage_bytes_pass_through_intact(tmp_path: Path) -> None:
    async def echo(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)

    # every byte value (NUL, 0xff, CR, ESC, invalid UTF-8) and a megabyte of noise
    payload = bytes(range(256)) * 4 + random.Random(0).randbytes(MIB) + b"\x00\xff\r\n"
    async with (
        hostile_server(echo, f"unix:{tmp_path / 'port.sock'}") as address,
        await _reader(address) as port,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(port.send_all, payload)
            with trio.fail_after(30):
                # a line ends at 0x0a only; the bytes before it come back as they were sent
                assert await port.read_line(timeout=30) == payload[: payload.index(b"\n")]
                rest = bytearray()
                while len(rest) < len(payload) - payload.index(b"\n") - 1:
                    data = await port.receive_some()
                    assert data
                    rest += data
        assert bytes(rest) == payload[payload.index(b"\n") + 1 :]
