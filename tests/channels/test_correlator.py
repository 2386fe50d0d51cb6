"""The correlator's hot path (issue 16): deadlines kept by the reader, writes straight to the
socket and their slow path, cancellation of a waiting call, a peer that floods the reader.

A scripted in-process QMP peer on a Unix socket plays the cases QEMU does not (it never stays
silent on purpose, nor stops reading); the same paths against QEMU are in qmp/test_client.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.channels.hostile import LineStream, serve_hostile
from virtrio.channels._correlator import Correlator
from virtrio.channels.qmp import open_qmp
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError

GREETING = (
    json.dumps(
        {"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0}}, "capabilities": []}}
    ).encode()
    + b"\r\n"
)


async def negotiate(peer: LineStream) -> None:
    await peer.send(GREETING)
    request = await peer.read_request()
    await peer.reply({}, request["id"])


async def test_each_waiting_call_keeps_its_own_deadline(tmp_path: Path) -> None:
    release = trio.Event()
    seen: list[str] = []

    async def script(peer: LineStream) -> None:
        await negotiate(peer)
        requests = {}
        for _ in range(3):
            request = await peer.read_request()
            requests[request["execute"]] = request["id"]
        await release.wait()
        await peer.reply({"late": True}, requests["short"])  # after its caller gave up
        await peer.reply({}, requests["middle"])
        await peer.reply({}, requests["long"])

    async def call(qmp: object, command: str, timeout: float) -> None:
        try:
            await qmp.execute(command, timeout=timeout)  # type: ignore[attr-defined]
            seen.append(f"{command} answered")
        except VirtrioTimeoutError:
            seen.append(f"{command} timed out")
        release.set()

    async with serve_hostile(tmp_path, script) as address, open_qmp(address) as qmp:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                # a later deadline first, then an earlier one: the reader's scope must move
                # earlier for the short call to time out alone
                nursery.start_soon(call, qmp, "middle", 10)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, qmp, "short", 0.1)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(call, qmp, "long", 30)
            # the late reply to "short" was dropped and mistaken for nothing else
            assert seen[0] == "short timed out"
            assert sorted(seen[1:]) == ["long answered", "middle answered"]
            assert qmp.is_connected


async def test_a_call_cancelled_from_outside_leaves_the_connection_working(
    tmp_path: Path,
) -> None:
    async def script(peer: LineStream) -> None:
        await negotiate(peer)
        silent = await peer.read_request()
        answered = await peer.read_request()
        await peer.reply({"n": 2}, answered["id"])
        await peer.reply({"n": 1}, silent["id"])  # late: its caller was cancelled

    async with serve_hostile(tmp_path, script) as address, open_qmp(address) as qmp:
        with trio.fail_after(20):
            with trio.move_on_after(0.1) as scope:
                await qmp.execute("silent")
            assert scope.cancelled_caught
            assert await qmp.execute("answered") == {"n": 2}
            assert qmp.is_connected


async def test_a_message_larger_than_the_socket_buffer_is_written_whole(tmp_path: Path) -> None:
    blob = "x" * (8 << 20)

    async def script(peer: LineStream) -> None:
        await negotiate(peer)
        request = await peer.read_request()
        await peer.reply(len(request["arguments"]["blob"]), request["id"])

    async with serve_hostile(tmp_path, script) as address, open_qmp(address) as qmp:
        with trio.fail_after(30):
            assert await qmp.execute("big", {"blob": blob}) == len(blob)


async def test_a_write_stuck_past_its_deadline_times_out_and_closes(tmp_path: Path) -> None:
    async def script(peer: LineStream) -> None:
        await negotiate(peer)  # then reads nothing more: our write cannot finish

    async with serve_hostile(tmp_path, script) as address, open_qmp(address) as qmp:
        with trio.fail_after(20):
            with pytest.raises(VirtrioTimeoutError, match=r"'big'.*0\.3 s"):
                await qmp.execute("big", {"blob": "x" * (8 << 20)}, timeout=0.3)
            # half a message was written: the stream is no longer usable
            assert not qmp.is_connected
            with pytest.raises(ConnectionLostError, match="interrupted"):
                await qmp.execute("query-status")


async def test_calls_pending_when_the_peer_hangs_up_fail_at_once(tmp_path: Path) -> None:
    async def script(peer: LineStream) -> None:
        await negotiate(peer)
        for _ in range(4):
            await peer.read_request()
        await peer.stream.aclose()

    failures = []

    async def call(qmp: object) -> None:
        try:
            await qmp.execute("query-status", timeout=60)  # type: ignore[attr-defined]
        except ConnectionLostError as exc:
            failures.append(exc)

    async with serve_hostile(tmp_path, script) as address, open_qmp(address) as qmp:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(call, qmp)
    assert len(failures) == 4
    assert all("closed by the peer" in str(f) for f in failures)


async def test_a_reader_that_always_finds_data_still_lets_other_tasks_run() -> None:
    """A socket already holding far more than a run of reads: the reader must yield before it
    has read it all (a peer flooding the connection cannot starve the other tasks)."""
    a, b = trio.socket.socketpair()
    ours, theirs = trio.SocketStream(a), trio.SocketStream(b)
    correlator: Correlator[bytes] = Correlator(ours, name="test", address="socketpair")
    chunks = 1000
    await theirs.send_all(b"x" * (10 * chunks))  # 10-byte reads: a thousand of them
    handled = []

    def handle(data: bytes | bytearray) -> None:
        handled.append(len(data))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(correlator.read_all, handle, 10)
        while not handled:  # until the reader has run
            await trio.lowlevel.checkpoint()
        assert len(handled) < chunks  # it yielded with data left to read
        with trio.fail_after(20):
            while sum(handled) < 10 * chunks:
                await trio.lowlevel.checkpoint()
        await theirs.aclose()
    await ours.aclose()
    assert handled[-1] == 0  # the end of stream is handled too


async def test_a_correlator_on_any_stream_keeps_deadlines_per_call() -> None:
    """Not a socket (a memory stream pair): no direct fd path, each call its own scope."""
    ours, theirs = trio.testing.memory_stream_pair()
    correlator: Correlator[bytes] = Correlator(ours, name="test", address="memory")

    async def reader() -> None:
        def handle(data: bytes | bytearray) -> None:
            if data:
                correlator.complete(int(data), bytes(data))

        await correlator.read_all(handle, 1024)

    async def peer() -> None:
        while data := await theirs.receive_some():
            if data == b"2":  # the first request goes unanswered
                await theirs.send_all(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        nursery.start_soon(peer)
        with trio.fail_after(20):
            with pytest.raises(VirtrioTimeoutError, match=r"no reply within 0\.05 s"):
                await correlator.call(1, b"1", what="one", timeout=0.05)
            assert await correlator.call(2, b"2", what="two", timeout=10) == b"2"
        nursery.cancel_scope.cancel()


async def test_a_send_with_a_deadline_times_out_when_the_peer_stops_reading() -> None:
    """``send(data, deadline=)`` (a keystroke that waits for no reply): at once when the
    stream takes it, TooSlowError at the deadline when it cannot, and the connection closed."""
    ours, theirs = trio.testing.lockstep_stream_pair()  # nothing is taken unless read
    correlator: Correlator[bytes] = Correlator(ours, name="test", address="memory")
    with trio.fail_after(20):
        with pytest.raises(trio.TooSlowError):
            await correlator.send(b"x" * 100, deadline=trio.current_time() + 0.05)
        with pytest.raises(ConnectionLostError, match="interrupted"):
            await correlator.send(b"y")
    await theirs.aclose()
