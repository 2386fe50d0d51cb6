"""Busy-polling for the answer (``open_gdb(spin=...)``): replies come right whether they arrive
while the client polls (a stub in a thread answers while the event loop spins) or after it
parked (the in-process stub cannot answer while the loop spins); the call's deadline and an
enclosing cancel scope bound the polling, and the policy stops polling when it does not pay."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import trio

from tests.channels.gdb.stub import FakeStub, serve_stub, serve_stub_in_thread
from virtrio.channels.gdb import open_gdb
from virtrio.channels.gdb._fastpath import SpinPolicy
from virtrio.errors import ConfigError, VirtrioTimeoutError

REGISTERS = {"r0": 1, "r1": 2, "pc": 0x100, "xpsr": 0x01000000}


def _late(release: threading.Event) -> FakeStub:
    """A stub whose ``m0,`` answer waits (in its own thread) until ``release`` is set."""

    def hold(_: bytes) -> None:
        assert release.wait(30), "the test never released the late answer"

    return FakeStub(handlers={b"m0,": hold})


async def test_replies_caught_while_polling_are_right(tmp_path: Path) -> None:
    stub = FakeStub()
    with serve_stub_in_thread(stub, tmp_path) as address:
        # a generous budget: the window shrinks to a few times the latency, so a thread's
        # slower answer may still miss it now and then (and is read after parking)
        async with open_gdb(address, spin=1.0) as gdb:
            for offset in range(0, 1024, 16):
                assert await gdb.read_memory(offset, 16) == bytes(stub.memory[offset : offset + 16])
                assert await gdb.read_registers() == REGISTERS
            assert gdb._reply_spin.caught > gdb._reply_spin.missed


async def test_replies_after_parking_are_right_and_polling_in_vain_stops(tmp_path: Path) -> None:
    stub = FakeStub()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with serve_stub(stub, tmp_path / "a") as address, open_gdb(address, spin=0.002) as gdb:
        requests = 100
        for offset in range(requests):
            assert await gdb.read_memory(offset, 4) == bytes(stub.memory[offset : offset + 4])
        spin = gdb._reply_spin
        # the stub (in this event loop) cannot answer while it spins: every poll missed, and
        # after a dozen misses only the probes (one wait in 16) polled
        assert spin.caught == 0
        assert 1 <= spin.missed < 30
    async with serve_stub(stub, tmp_path / "b") as address, open_gdb(address, spin=0) as gdb:
        assert await gdb.read_registers() == REGISTERS
        assert gdb._reply_spin.missed == gdb._reply_spin.caught == 0


async def test_a_wait_polls_once_however_the_answer_is_read(tmp_path: Path) -> None:
    # the in-process stub cannot answer while the client polls: each request's wait spends
    # one window in vain, then parks (the fast path's window is not followed by another)
    stub = FakeStub()
    async with serve_stub(stub, tmp_path) as address, open_gdb(address, spin=0.002) as gdb:
        await gdb.read_memory(0, 1)  # x is tried once, refused: m from now on, one request
        for request in range(1, 4):
            gdb._reply_spin = SpinPolicy(0.002)
            assert await gdb.read_memory(0x10, 2) == bytes((0x10, 0x11))
            assert (gdb._reply_spin.caught, gdb._reply_spin.missed) == (0, 1), request


async def test_a_call_deadline_bounds_the_polling(tmp_path: Path) -> None:
    release = threading.Event()
    stub = _late(release)
    with serve_stub_in_thread(stub, tmp_path) as address:
        async with open_gdb(address, spin=30.0) as gdb:
            start = time.monotonic()
            with pytest.raises(VirtrioTimeoutError, match=r"within 0\.2 s"):
                await gdb.read_memory(0, 4, timeout=0.2)
            assert time.monotonic() - start < 10  # the deadline, not the 30 s budget
            release.set()
            # the late answer is dropped, not taken for the next request's
            assert await gdb.read_memory(0x40, 4) == bytes(stub.memory[0x40:0x44])


async def test_a_cancel_scope_deadline_bounds_the_polling(tmp_path: Path) -> None:
    release = threading.Event()
    stub = _late(release)
    with serve_stub_in_thread(stub, tmp_path) as address:
        async with open_gdb(address, spin=30.0, call_timeout=20.0) as gdb:
            start = time.monotonic()
            with trio.move_on_after(0.2) as scope:
                await gdb.read_memory(0, 4)
            assert scope.cancelled_caught
            assert time.monotonic() - start < 10  # neither the budget nor the call's deadline
            release.set()
            assert await gdb.read_memory(0x40, 4) == bytes(stub.memory[0x40:0x44])
            assert await gdb.read_registers() == REGISTERS


async def test_spin_must_be_finite_and_not_negative(tmp_path: Path) -> None:
    for spin in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="spin"):
            async with open_gdb(f"unix:{tmp_path}/none.sock", spin=spin):
                pass


def test_the_window_follows_the_latency_up_to_the_budget() -> None:
    policy = SpinPolicy(200e-6)
    assert policy.next_window() == 200e-6
    for _ in range(100):
        policy.record(10e-6)
    assert policy.next_window() == pytest.approx(40e-6, rel=0.05)  # 4x the latency
    policy.record(None)  # an answer came later than the window: it doubles
    assert policy.next_window() == pytest.approx(80e-6, rel=0.05)
    policy.record(150e-6)  # never below what just worked
    assert policy.next_window() == 200e-6
    for _ in range(100):
        policy.record(1e-6)
    assert policy.next_window() == pytest.approx(20e-6, rel=0.01)  # the floor


def test_polling_stops_when_it_does_not_pay_and_probes() -> None:
    policy = SpinPolicy(100e-6)
    while policy.next_window() > 0:
        policy.record(None)
    assert policy.missed < 15
    windows = [policy.next_window() for _ in range(32)]
    assert windows.count(100e-6) == 2  # one probe in 16 waits, with the whole budget
    assert windows.count(0.0) == 30
    for _ in range(20):  # probes that catch their answer turn it back on
        policy.record(30e-6)
    assert policy.next_window() > 0
    assert SpinPolicy(0).next_window() == 0
