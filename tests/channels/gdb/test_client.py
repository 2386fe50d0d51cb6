"""The client's own behaviour against a scripted stub: what QEMU 7.2 does not show (no-ack mode,
binary x/X, naks, refusals) and failures (timeouts, cancellation, lost connections, garbage)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.channels.gdb.stub import FakeStub, frame, serve_stub
from virtrio.channels.gdb import (
    ConsoleOutput,
    GdbCommandError,
    GdbProtocolError,
    GdbUnsupportedError,
    Stopped,
    open_gdb,
)
from virtrio.channels.gdb._acks import ACK_DELAY
from virtrio.channels.gdb._fastpath import Mutex
from virtrio.errors import ConfigError, ConnectError, ConnectionLostError, VirtrioTimeoutError


async def all_acked() -> None:
    """Until the client has sent the ack it owes for the stub's last packet (with no next
    packet to go out with, after the ack delay)."""
    await trio.sleep(3 * ACK_DELAY)
    await trio.testing.wait_all_tasks_blocked()


async def test_handshake_registers_and_memory_in_ack_mode(tmp_path: Path) -> None:
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        assert gdb.target.architecture == "arm"
        assert [r.name for r in gdb.target.registers] == ["r0", "r1", "pc", "xpsr"]
        assert await gdb.read_registers() == {"r0": 1, "r1": 2, "pc": 0x100, "xpsr": 0x01000000}
        assert await gdb.read_memory(0x10, 4) == bytes((0x10, 0x11, 0x12, 0x13))
        await gdb.write_memory(0x20, b"\x00}#$*")
        assert stub.memory[0x20:0x25] == b"\x00}#$*"
        # x and X are tried once, refused, and not tried again
        assert [p[:1] for p in stub.received[-4:]] == [b"x", b"m", b"X", b"M"]
        # one ack from us for every packet the stub sent, each as soon as it was read
        await trio.testing.wait_all_tasks_blocked()
        assert stub.acks == len(stub.received)


async def test_a_reply_that_fails_to_decode_is_acked_and_the_next_gets_its_own(
    tmp_path: Path,
) -> None:
    # the fast path owes a reply's ack before the call decodes it: one that fails to decode
    # (an error, hex that is not hex) is acked all the same, and the next request gets its
    # reply
    stub = FakeStub(handlers={b"g": lambda _: [b"E01"], b"m40,": lambda _: [b"0g"]})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with pytest.raises(GdbCommandError, match="E01"):
            await gdb.read_registers()
        await all_acked()
        assert stub.acks == len(stub.received)
        with pytest.raises(GdbProtocolError, match="not hex"):
            await gdb.read_memory(0x40, 1)
        await all_acked()
        assert stub.acks == len(stub.received)
        assert await gdb.read_memory(0x10, 2) == bytes((0x10, 0x11))
        stub.handlers.clear()
        assert await gdb.read_registers() == {"r0": 1, "r1": 2, "pc": 0x100, "xpsr": 0x01000000}
        await all_acked()
        assert stub.acks == len(stub.received)
        assert gdb.is_connected


async def test_an_ack_goes_out_at_once_and_one_the_socket_cannot_take_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a reply's + goes out as soon as the reply is read (QEMU's main loop, woken for it, is
    # still awake when the next request comes); one the socket cannot take then waits for the
    # next packet or, with none, the ack delay; on closing, it goes at once
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address:
        async with open_gdb(address) as gdb:
            await all_acked()
            start = len(stub.raw)
            assert await gdb.request(b"g") == stub._g()
            await trio.testing.wait_all_tasks_blocked()
            assert bytes(stub.raw[start:]) == b"$g#67+"
            with monkeypatch.context() as m:
                m.setattr(gdb._acks, "_write_now", lambda data: 0)  # as if the socket were full
                assert await gdb.request(b"g") == stub._g()
            assert await gdb.request("g") == stub._g()
            await trio.testing.wait_all_tasks_blocked()
            assert bytes(stub.raw[start:]) == b"$g#67+$g#67+$g#67+"
            with monkeypatch.context() as m:
                m.setattr(gdb._acks, "_write_now", lambda data: 0)
                await gdb.request(b"g")
            await trio.testing.wait_all_tasks_blocked()
            assert bytes(stub.raw[start:]) == b"$g#67+$g#67+$g#67+$g#67"
            await all_acked()
            assert bytes(stub.raw[start:]) == b"$g#67+$g#67+$g#67+$g#67+"
            assert stub.acks == len(stub.received)
            with monkeypatch.context() as m:
                m.setattr(gdb._acks, "_write_now", lambda data: 0)
                await gdb.request(b"g")
        await trio.testing.wait_all_tasks_blocked()
        assert bytes(stub.raw[start:]) == b"$g#67+$g#67+$g#67+$g#67+$g#67+"


async def test_a_waiter_cancelled_before_the_lock_is_handed_over_leaves_it_free() -> None:
    lock = Mutex()
    await lock.acquire()
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def wait() -> None:
            with scope:
                await lock.acquire()

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()  # cancelled, not yet resumed: release finds no one to hand the lock to
        lock.release()
    assert not lock.locked()
    assert lock.try_acquire()


async def test_no_ack_mode_and_binary_transfers_when_offered(tmp_path: Path) -> None:
    stub = FakeStub(no_ack=True, binary=True)
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        before = stub.acks
        data = bytes(range(256)) * 9  # two PacketSize pieces, with every byte that escapes
        await gdb.write_memory(0, data)
        assert await gdb.read_memory(0, len(data)) == data
        await trio.testing.wait_all_tasks_blocked()
        assert stub.acks == before  # no acks any more
        kinds = {p[:1] for p in stub.received[-4:]}
        assert kinds == {b"X", b"x"}


async def test_register_writes_fall_back_to_G_without_P(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"P": lambda _: [b""], b"G": lambda _: [b"OK"]})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        await gdb.write_register("r1", 0xABCD)
        assert stub.received[-1].startswith(b"G")
        assert stub.received[-1][1:] == b"01000000cdab0000" + b"00010000" + b"00000001"
        with pytest.raises(ValueError, match="does not fit"):
            await gdb.write_register("r0", -(2**40))


async def test_error_and_unsupported_replies(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"Z1": lambda _: [b""], b"Z0": lambda _: [b"E22"]})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with pytest.raises(GdbUnsupportedError, match="Z1,"):
            await gdb.set_breakpoint(0x100, hardware=True)
        with pytest.raises(GdbCommandError) as info:
            await gdb.set_breakpoint(0x100)
        assert info.value.code == 0x22
        assert stub.received[-1] == b"Z0,100,2"  # Thumb: kind 2 on M-profile
        with pytest.raises(GdbCommandError, match="E14"):
            await gdb.read_memory(0x10000, 4)
        assert gdb.is_connected


async def test_continue_console_output_interrupt_and_events(tmp_path: Path) -> None:
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with gdb.events() as events:
            await gdb.continue_()
            assert gdb.is_running
            await stub.send(frame(b"O" + b"hello\n".hex().encode()))
            assert await events.receive() == ConsoleOutput(b"hello\n")
            with pytest.raises(VirtrioTimeoutError, match="still running"):
                await gdb.wait_stop(timeout=0.01)
            stop = await gdb.interrupt()
            assert isinstance(stop, Stopped)
            assert stop.signal == 2
            assert await events.receive() == stop
        # a stopped target's interrupt and wait_stop return its last stop at once
        assert await gdb.interrupt() is stop
        assert await gdb.wait_stop() is stop


async def test_a_stop_waiter_that_gives_up_leaves_the_reading_to_the_watcher(
    tmp_path: Path,
) -> None:
    # wait_stop reads the socket itself; once it has timed out, the stop that comes with no
    # caller waiting still reaches the listeners and last_stop
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with gdb.events() as events:
            await gdb.continue_()
            with pytest.raises(VirtrioTimeoutError, match="still running"):
                await gdb.wait_stop(timeout=0.01)
            await stub.stop(b"T05thread:p01.01;")
            stop = await events.receive()
            assert isinstance(stop, Stopped)
            assert not gdb.is_running
            assert gdb.last_stop is stop
            assert await gdb.wait_stop() is stop


async def test_a_breakpoint_at_the_pc_is_stepped_off_quietly(tmp_path: Path) -> None:
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        await gdb.set_breakpoint(0x100)
        with gdb.events() as events:
            await gdb.continue_()
            await trio.testing.wait_all_tasks_blocked()  # the stub has read the vCont;c
            assert stub.received[-5:] == [
                b"p2",
                b"z0,100,2",
                b"vCont;s:p1.1",
                b"Z0,100,2",
                b"vCont;c",
            ]
            await stub.stop(b"T05thread:p01.01;swbreak:;")
            hit = await events.receive()
        assert isinstance(hit, Stopped)
        assert hit.reason == "swbreak"  # the internal step's stop was not published


async def test_a_refused_resume_is_raised_by_wait_stop(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"vCont;c": lambda _: [b"E01"]})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        await gdb.continue_()
        with pytest.raises(GdbCommandError, match="E01"):
            await gdb.wait_stop()
        assert not gdb.is_running
        assert await gdb.read_register("pc") == 0x100


async def test_a_nak_makes_the_client_send_again(tmp_path: Path) -> None:
    naks = [1]
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        # the stub says "-" instead of answering: the client sends the packet again
        stub.acking = False
        original = stub.answer

        def answer(payload: bytes) -> list[bytes]:
            if payload == b"m0,4" and naks:
                naks.pop()
                return []
            return original(payload)

        stub.answer = answer  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gdb.read_memory, 0, 4)
            await trio.testing.wait_all_tasks_blocked()
            await stub.send(b"-")
        assert stub.received[-2:] == [b"m0,4", b"m0,4"]


async def test_requests_from_many_tasks_each_get_their_reply(tmp_path: Path) -> None:
    stub = FakeStub()
    results: dict[int, bytes] = {}
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:

        async def read(offset: int) -> None:
            results[offset] = await gdb.read_memory(offset, 8)

        async with trio.open_nursery() as nursery:
            for offset in range(0, 400, 8):
                nursery.start_soon(read, offset)
    assert results == {o: bytes(stub.memory[o : o + 8]) for o in range(0, 400, 8)}


async def test_a_timed_out_request_does_not_take_the_next_reply(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    held: list[bytes] = []
    stub = FakeStub(handlers={b"m0,": lambda p: held.append(p) or []})  # type: ignore[func-returns-value]
    async with serve_stub(stub, tmp_path) as address, open_gdb(address, call_timeout=5) as gdb:
        with pytest.raises(VirtrioTimeoutError, match="no reply within 5 s"):
            await gdb.read_memory(0, 4)
        assert gdb.is_connected
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gdb.read_memory, 0x40, 4)
            await trio.testing.wait_all_tasks_blocked()
            assert stub.received[-1] == b"m0,4"  # the next request waits for the late reply
            await stub.send(frame(b"deadbeef"))
        assert stub.received[-1] == b"m40,4"
        # a shorter per-call deadline is kept although a longer one is pending
        assert await gdb.read_memory(0x40, 4) == bytes(stub.memory[0x40:0x44])  # arms 5 s
        with trio.fail_after(3), pytest.raises(VirtrioTimeoutError, match="within 1 s"):
            await gdb.read_memory(0, 4, timeout=1)
        await stub.send(frame(b"00000000"))
        # and a caller cancelled mid-request leaves the connection in step, too
        with trio.move_on_after(1):
            await gdb.read_memory(0, 4)
        await stub.send(frame(b"00000000"))
        assert await gdb.read_memory(0x40, 4) == bytes(stub.memory[0x40:0x44])


async def test_the_stub_hanging_up_fails_calls_and_listeners(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"m": lambda _: []})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with gdb.events() as events:
            async with trio.open_nursery() as nursery:

                async def hang_up() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    assert stub.stream is not None
                    await stub.stream.aclose()

                nursery.start_soon(hang_up)
                with pytest.raises(ConnectionLostError, match="closed the connection"):
                    await gdb.read_memory(0, 4, timeout=math.inf)
            with pytest.raises(ConnectionLostError):
                await events.receive()
        assert not gdb.is_connected
        with pytest.raises(ConnectionLostError):
            await gdb.wait_stop()


async def test_garbage_from_the_stub_closes_the_connection(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"m": lambda _: []})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        async with trio.open_nursery() as nursery:

            async def garbage() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await stub.send(b"!junk")

            nursery.start_soon(garbage)
            with pytest.raises(ConnectionLostError, match="unexpected byte"):
                await gdb.read_memory(0, 4)
        assert isinstance(gdb.closed_reason, GdbProtocolError)


async def test_a_failed_handshake_is_a_connect_error(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"qSupported": lambda _: [b"PacketSize=zz"]})
    async with serve_stub(stub, tmp_path) as address:
        with pytest.raises(ConnectError, match="handshake"):
            async with open_gdb(address):
                pass
        with pytest.raises(ConfigError):
            async with open_gdb(address, call_timeout=0):
                pass


async def test_a_silent_stub_times_out_the_handshake(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    stub = FakeStub(handlers={b"qSupported": lambda _: []})
    async with serve_stub(stub, tmp_path) as address:
        with pytest.raises(ConnectError, match="timed out"):
            async with open_gdb(address, connect_timeout=3):
                pass


async def test_plain_c_and_s_without_vcont(tmp_path: Path) -> None:
    stub = FakeStub(handlers={b"vCont?": lambda _: [b""]})
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        assert gdb.vcont_actions == frozenset()
        stop = await gdb.step()
        assert isinstance(stop, Stopped)
        assert stub.received[-1] == b"s"
        await gdb.continue_()
        await trio.testing.wait_all_tasks_blocked()
        assert stub.received[-1] == b"c"
        await stub.stop()
        await gdb.wait_stop()
        await gdb.write_memory(0x10, b"")  # nothing to write, nothing sent
        assert stub.received[-1] == b"c"
        assert await gdb.read_memory(0x10, 0) == b""


async def test_endless_monitor_output_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from virtrio.channels.gdb import _connection

    monkeypatch.setattr(_connection, "MAX_MONITOR_OUTPUT", 1000)
    chunk = b"O" + (b"x" * 200).hex().encode()
    stub = FakeStub(handlers={b"qRcmd": lambda _: [chunk] * 10})  # and never OK
    async with serve_stub(stub, tmp_path) as address, open_gdb(address) as gdb:
        with pytest.raises(ConnectionLostError, match="monitor output over 1000 bytes"):
            await gdb.monitor("info mtree")
        assert isinstance(gdb.closed_reason, GdbProtocolError)
