"""The fault matrix for QMP: the real QEMU where it can play the fault, a hostile in-process
QMP server where QEMU never would.

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       real QEMU, stopped (SIGSTOP) so 50 calls stay pending, then
                       SIGKILL: all fail with ConnectionLostError within 100 ms
peer restarted         real QEMU killed and started again on the same socket path:
                       ``vm.qmp`` (supervised) answers again within the backoff bound
connection reset       hostile server aborts the TCP connection (RST) mid-call
garbage bytes          hostile server answers a call with bytes that are not JSON
oversize line          hostile server streams a line past ``max_message_size``: a
                       clear error, peak RSS bounded
never answers          hostile server reads and never replies: the per-call deadline
                       fires (autojump clock); real QEMU stopped: the same
slow reader            hostile server floods events at a subscriber that never reads:
                       its queue stays bounded, a red pressure notice counts the drops,
                       a reading subscriber gets every event
=====================  ===========================================================

Issue 17's hostile-reply cells live beside the RPC shell: tests/channels/test_hostile_rpc.py
(a reply id that is not an integer is a remote protocol error, for QMP and the agent alike).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast, reset
from tests.faults.jsonpeer import JsonLines
from tests.peers.qemu import BARE
from virtrio.channels.qmp import open_qmp
from virtrio.engine.guest import QemuProcess, open_qemu
from virtrio.errors import ConnectionLostError, ProtocolError, VirtrioTimeoutError
from virtrio.nurseries import Backoff, ChannelState, open_vm
from virtrio.primitives import PressureLevel


async def test_sigkill_fails_every_pending_call_fast(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        os.kill(bare_qemu.pid, signal.SIGSTOP)
        errors = await pending_calls_fail_fast(
            lambda: qmp.query_status(timeout=30), bare_qemu.kill, calls=50,
            in_flight=lambda: qmp.in_flight,
        )  # fmt: skip
        assert all(str(bare_qemu.qmp_address) in str(e) for e in errors)
        assert not qmp.is_connected


async def test_restart_on_the_same_address(qemu_binary: str, tmp_path: Path) -> None:
    bound = 0.2  # the backoff's maximum: a restarted peer is retried at least this often
    workdir = tmp_path / "qemu"
    async with open_qemu(BARE, workdir=workdir) as first:
        fast = lambda: Backoff(initial=bound, maximum=bound, jitter=0)  # noqa: E731
        async with open_vm("f", qmp=first.qmp_address, backoff=fast, connect_timeout=2) as vm:
            assert (await vm.qmp.query_status()).running
            with vm.state_changes() as changes:
                first.kill()
                await first.wait()
                with trio.fail_after(5):
                    while (await changes.receive()).state is not ChannelState.DISCONNECTED:
                        pass
            async with open_qemu(BARE, workdir=workdir) as second:
                assert second.qmp_address == first.qmp_address
                # the deadline is the bound: one backoff, then one connect and greeting
                assert (await vm.qmp.query_status(timeout=bound + 2)).running


async def test_connection_reset_mid_call() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qmp_handshake()
        await lines.receive()
        reset(stream)
        await trio.sleep_forever()

    async with hostile_server(peer) as address, open_qmp(address) as qmp:
        with pytest.raises(ConnectionLostError, match=address.removeprefix("tcp://")):
            await qmp.query_status(timeout=10)
        assert not qmp.is_connected


async def test_garbage_bytes_fail_the_call_with_a_protocol_error() -> None:
    async def peer(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qmp_handshake()
        await lines.receive()
        await stream.send_all(b"\x00\x13garbage{]\r\n")
        await trio.sleep_forever()

    async with hostile_server(peer) as address, open_qmp(address) as qmp:
        with pytest.raises(ConnectionLostError, match="invalid JSON"):
            await qmp.query_status(timeout=10)
        assert isinstance(qmp.closed_reason, ProtocolError)
        with pytest.raises(ConnectionLostError):  # the connection is not trusted again
            await qmp.query_status(timeout=10)


async def test_oversize_line_is_refused_with_memory_bounded() -> None:
    limit = 1 * MIB
    chunk = b"x" * MIB

    async def peer(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qmp_handshake()
        await lines.receive()
        for _ in range(64):  # 64 MiB of one line, unless the client hangs up first
            await stream.send_all(chunk)
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with (
            hostile_server(peer) as address,
            open_qmp(address, max_message_size=limit) as qmp,
        ):
            with pytest.raises(ConnectionLostError, match="exceeds the limit of 1048576"):
                await qmp.query_status(timeout=10)
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_a_peer_that_never_answers(autojump_clock: trio.abc.Clock) -> None:
    async def peer(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qmp_handshake()
        while True:
            await lines.receive()

    async with hostile_server(peer, "unix:" + _sock()) as address, open_qmp(address) as qmp:
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError, match=r"'query-status'.*30 s"):
            await qmp.query_status(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)
        assert qmp.is_connected  # a timeout is the call's, not the connection's


async def test_a_stopped_qemu_lets_the_deadline_fire(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        os.kill(bare_qemu.pid, signal.SIGSTOP)
        try:
            with pytest.raises(VirtrioTimeoutError, match=r"0\.1 s"):
                await qmp.query_status(timeout=0.1)
        finally:
            os.kill(bare_qemu.pid, signal.SIGCONT)
        assert (await qmp.query_status()).running


async def test_a_slow_event_reader_stays_bounded() -> None:
    events = 200

    async def peer(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qmp_handshake()
        request = await lines.receive()
        for n in range(events):
            await lines.send({"event": "FLOOD", "data": {"n": n},
                              "timestamp": {"seconds": 0, "microseconds": 0}})  # fmt: skip
        await lines.reply(request)  # after every event: the call returning means all were read
        await trio.sleep_forever()

    async with hostile_server(peer) as address, open_qmp(address) as qmp:
        with qmp.events(max_queue=8) as stalled, qmp.events(max_queue=events) as reader:
            await qmp.execute("flood", timeout=10)
            assert stalled.queue_size == 8
            notices = []
            while (notice := stalled.take_pressure()) is not None:
                notices.append(notice)
            assert [n.level for n in notices] == [PressureLevel.YELLOW, PressureLevel.RED]
            assert notices[-1].dropped == events - 8
            assert reader.queue_size == events  # one slow subscriber slows no other
            assert [reader.receive_nowait().data["n"] for _ in range(events)] == list(range(events))


_counter = 0


def _sock() -> str:
    global _counter
    _counter += 1
    path = Path(f"/tmp/virtrio-faults-{os.getpid()}-{_counter}.sock")
    return str(path)
