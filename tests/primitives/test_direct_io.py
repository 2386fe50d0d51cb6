"""DirectReads and write_all: a Trio socket read and written through its descriptor (a read
waits first after a short read and yields every READS_WITHOUT_YIELD th read in a row; a write
gathers many buffers, waiting only while the socket is full)."""

from __future__ import annotations

import pytest
import trio

from virtrio.primitives import READS_WITHOUT_YIELD, DirectReads, write_all


async def test_reads_what_came_and_the_end_of_stream() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        reads = DirectReads(a)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.send, b"hello")
            assert await reads.read(1024) == b"hello"
        assert reads.drained  # a short read: the next one waits first
        await b.send(b"x" * 10)
        assert await reads.read(4) == b"xxxx"
        assert not reads.drained  # a full read: the next one reads at once
        assert await reads.read(100) == b"x" * 6
        b.shutdown(trio.socket.SHUT_WR)
        assert await reads.read(100) == b""


async def test_a_closed_socket_is_closed_resource_error() -> None:
    a, b = trio.socket.socketpair()
    with b:
        reads = DirectReads(a, drained=False)
        a.close()
        with pytest.raises(trio.ClosedResourceError):
            await reads.read(10)


async def test_a_read_is_cancellable_while_it_waits_and_stays_drained() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        reads = DirectReads(a)
        with trio.move_on_after(0.01) as scope:
            await reads.read(10)
        assert scope.cancelled_caught
        assert reads.drained
        await b.send(b"late")
        assert await reads.read(10) == b"late"


def _schedule_points() -> int:
    # Trio's own count of the task's schedule points, as trio.testing.assert_checkpoints reads it
    return int(trio.lowlevel.current_task()._schedule_points)


async def test_a_flood_yields_every_so_many_reads() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"y" * (4 * 2 * READS_WITHOUT_YIELD))  # waiting in the socket, whole
        reads = DirectReads(a, drained=False)
        yielded_at = []
        for i in range(1, 2 * READS_WITHOUT_YIELD + 1):
            before = _schedule_points()
            assert await reads.read(4) == b"yyyy"
            if _schedule_points() != before:
                yielded_at.append(i)
        # full reads need no trip through the scheduler, but every READS_WITHOUT_YIELD th does
        assert yielded_at == [READS_WITHOUT_YIELD, 2 * READS_WITHOUT_YIELD]


async def test_settle_false_leaves_the_yield_to_the_caller() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        await b.send(b"z" * (2 * READS_WITHOUT_YIELD))
        reads = DirectReads(a, drained=False)
        before = _schedule_points()
        for _ in range(READS_WITHOUT_YIELD):
            await reads.read(2, settle=False)
        assert _schedule_points() == before
        await reads.settle()
        assert _schedule_points() == before + 1
        await reads.settle()  # once owed, once paid
        assert _schedule_points() == before + 1


async def test_write_all_sends_every_buffer_in_order_through_a_full_socket() -> None:
    a, b = trio.socket.socketpair()
    with a, b:
        a.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
        parts: list[bytes | memoryview] = [bytes([i % 251]) * (i % 97 + 1) for i in range(3000)]
        expected = b"".join(parts)  # more buffers than one writev takes, more bytes than fit
        got = bytearray()

        async def drain() -> None:
            while len(got) < len(expected):
                got.extend(await b.recv(65536))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            assert await write_all(a, parts)  # it had to wait for room
        assert parts == []
        assert bytes(got) == expected


async def test_write_all_that_fits_does_not_wait_and_a_closed_socket_is_reported() -> None:
    a, b = trio.socket.socketpair()
    with b:
        assert not await write_all(a, [b"ab", memoryview(b"cd")])
        assert await b.recv(10) == b"abcd"
        a.close()
        with pytest.raises(trio.ClosedResourceError):
            await write_all(a, [b"x"])
