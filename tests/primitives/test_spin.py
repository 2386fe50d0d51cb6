"""SpinPolicy (virtrio/primitives/_spin.py): a poll returns what the read brought, stays within
its window and the deadline, and a fair one never polls while another task is ready. (The
window's adaptation is tested with the GDB client, tests/channels/gdb/test_spin.py.)"""

from __future__ import annotations

import os

import trio
import trio.testing

from virtrio.primitives import DirectReads, SpinPolicy


def test_a_poll_returns_what_the_read_brings_and_counts_it() -> None:
    calls = iter([None, None, b"echo"])
    spin = SpinPolicy(1.0)

    async def main() -> bytes | None:
        return spin.poll_call(lambda: next(calls))

    assert trio.run(main) == b"echo"
    assert (spin.caught, spin.missed) == (1, 0)


def test_a_poll_gives_up_after_its_window_and_never_past_the_deadline() -> None:
    spin = SpinPolicy(0.001)
    reads = 0

    def nothing() -> None:
        nonlocal reads
        reads += 1

    async def main() -> None:
        assert spin.poll_call(nothing) is None
        assert spin.missed == 1
        before = reads
        assert spin.poll_call(nothing, deadline=trio.current_time()) is None  # passed
        assert reads == before  # no read at all

    trio.run(main)
    assert SpinPolicy(0).poll_call(nothing) is None


async def test_a_fair_poll_never_runs_while_another_task_is_ready() -> None:
    fair, greedy = SpinPolicy(1.0, fair=True), SpinPolicy(1.0)
    read = iter([b"now", b"now"]).__next__
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)  # runnable, not yet run
        assert fair.poll_call(read) is None  # it yields the CPU to that task instead
        assert (fair.caught, fair.missed, fair.declined) == (0, 0, 1)  # nothing learnt from it
        assert greedy.poll_call(read) == b"now"
    await trio.testing.wait_all_tasks_blocked()
    assert fair.poll_call(read) == b"now"  # nothing else to run: it polls


async def test_a_fair_poll_ends_at_the_next_timer() -> None:
    spin = SpinPolicy(10.0, fair=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert spin.poll_call(lambda: None) is None  # after the timer's 10 ms, not 10 s
        assert spin.missed == 1


async def test_direct_reads_poll_before_parking() -> None:
    ours, theirs = trio.socket.socketpair()
    with ours, theirs:
        reads = DirectReads(ours)
        spin = SpinPolicy(1.0)
        os.write(theirs.fileno(), b"there")
        assert await reads.read(100, spin=spin) == b"there"  # caught while polling
        assert spin.caught == 1
        assert reads.drained
        missed = SpinPolicy(0.0001)
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.sleep(0.05)
                await theirs.send(b"later")

            nursery.start_soon(later)
            assert await reads.read(100, spin=missed) == b"later"  # polled in vain, then parked
        assert missed.missed == 1


async def test_a_poll_ends_when_other_work_comes() -> None:
    spin = SpinPolicy(60.0)
    asked = iter([False, False, True])
    assert spin.poll_call(lambda: None, stop=lambda: next(asked)) is None
    assert (spin.caught, spin.missed, spin.declined) == (0, 0, 1)


async def test_a_fair_poll_allows_the_tasks_its_caller_made_ready() -> None:
    spin = SpinPolicy(1.0, fair=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 0)
        assert spin.poll_call(lambda: b"x", ready_ok=1) == b"x"
