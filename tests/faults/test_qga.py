"""The fault matrix for the guest agent on its socket: the real qemu-ga (on the host, confined)
where it can play the fault, a hostile in-process agent where qemu-ga never would. (Through
libvirt: tests/faults/test_libvirt.py.)

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       real qemu-ga stopped (SIGSTOP) so 20 calls stay pending, then
                       SIGKILL: all fail with ConnectionLostError within 100 ms
peer restarted         real qemu-ga killed and started again on the same socket:
                       ``vm.qga`` (supervised) answers again within the backoff bound
connection reset       hostile agent aborts the TCP connection (RST) mid-call
garbage bytes          hostile agent answers a call with bytes that are not JSON
oversize line          hostile agent streams a line past ``max_message_size``: a clear
                       error, peak RSS bounded
never answers          hostile agent reads and never replies: the per-call deadline
                       fires (autojump clock), and the next call resynchronises first
slow reader            does not apply: the agent pushes nothing unasked (no events), and
                       every reply is bounded by ``max_message_size``
=====================  ===========================================================

Issue 17's agent cells: tests/channels/test_hostile_rpc.py (reply ids) and
tests/channels/qga/test_protocol.py (garbage before the resync sentinel is skipped).
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

from tests.faults.hostile import MIB, PeakRss, hostile_server, pending_calls_fail_fast, reset
from tests.faults.jsonpeer import JsonLines
from tests.peers.qga import HostAgent
from virtrio.channels.qga import open_qga
from virtrio.errors import ConnectionLostError, ProtocolError, VirtrioTimeoutError
from virtrio.nurseries import Backoff, ChannelState, open_vm


async def test_sigkill_fails_every_pending_call_fast(host_qga: HostAgent) -> None:
    async with open_qga(host_qga.address) as qga:
        os.kill(host_qga.process.pid, signal.SIGSTOP)
        await pending_calls_fail_fast(
            lambda: qga.ping(timeout=30), host_qga.process.kill, calls=20,
            in_flight=lambda: qga.in_flight,
        )  # fmt: skip
        host_qga.process.wait()
        assert not qga.is_connected


async def test_restart_on_the_same_address(host_qga: HostAgent) -> None:
    bound = 0.2
    fast = lambda: Backoff(initial=bound, maximum=bound, jitter=0)  # noqa: E731
    async with open_vm("f", qga=host_qga.address, backoff=fast, connect_timeout=2) as vm:
        await vm.qga.ping()
        with vm.state_changes() as changes:
            host_qga.process.kill()
            with trio.fail_after(5):
                while (await changes.receive()).state is not ChannelState.DISCONNECTED:
                    pass
        host_qga.restart()
        # the deadline is the bound: one backoff, then one connect and resync
        await vm.qga.ping(timeout=bound + 2)


async def test_connection_reset_mid_call() -> None:
    async def agent(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qga_handshake()
        await lines.receive()
        reset(stream)
        await trio.sleep_forever()

    async with hostile_server(agent) as address, open_qga(address) as qga:
        with pytest.raises(ConnectionLostError, match="guest agent connection"):
            await qga.ping(timeout=10)
        assert not qga.is_connected


async def test_garbage_bytes_fail_the_call_with_a_protocol_error() -> None:
    async def agent(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qga_handshake()
        await lines.receive()
        await stream.send_all(b"\x00garbage{]\n")
        await trio.sleep_forever()

    async with hostile_server(agent) as address, open_qga(address) as qga:
        with pytest.raises(ConnectionLostError, match="invalid JSON"):
            await qga.ping(timeout=10)
        assert isinstance(qga.closed_reason, ProtocolError)


async def test_oversize_line_is_refused_with_memory_bounded() -> None:
    chunk = b"x" * MIB

    async def agent(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qga_handshake()
        await lines.receive()
        for _ in range(64):
            await stream.send_all(chunk)
        await trio.sleep_forever()

    with PeakRss() as rss:
        async with hostile_server(agent) as address, open_qga(address, max_message_size=MIB) as qga:
            with pytest.raises(ConnectionLostError, match="exceeds the limit of 1048576"):
                await qga.ping(timeout=10)
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


async def test_a_peer_that_never_answers(autojump_clock: trio.abc.Clock) -> None:
    requests: list[str] = []

    async def agent(stream: trio.SocketStream) -> None:
        lines = JsonLines(stream)
        await lines.qga_handshake()
        while True:
            request = await lines.receive()
            requests.append(request["execute"])
            if request["execute"] == "guest-sync-delimited":  # answers resyncs only
                await stream.send_all(b"\xff")
                await lines.reply(request, request["arguments"]["id"])

    async with hostile_server(agent) as address, open_qga(address) as qga:
        before = trio.current_time()
        with pytest.raises(VirtrioTimeoutError, match=r"'guest-ping'.*30 s"):
            await qga.ping(timeout=30)
        assert trio.current_time() - before == pytest.approx(30)
        with pytest.raises(VirtrioTimeoutError):
            await qga.ping(timeout=5)
        assert requests == ["guest-ping", "guest-sync-delimited", "guest-ping"]
