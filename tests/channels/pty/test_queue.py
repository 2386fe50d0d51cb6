"""The PTY client's event queue: FIFO, put waits at the bound, the bound can change."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from virtrio.channels.pty._queue import EventQueue


async def test_put_waits_at_the_bound_until_a_get_or_a_wider_bound() -> None:
    queue: EventQueue[int] = EventQueue(1)
    await queue.put(1)
    done: list[int] = []

    async def put(item: int) -> None:
        await queue.put(item)
        done.append(item)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(put, 2)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert len(queue) == 1
        assert await queue.get() == 1
        await trio.testing.wait_all_tasks_blocked()
        assert done == [2]
        nursery.start_soon(put, 3)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [2]
        queue.limit = 2  # a subscription widening the bound lets the waiting put in
        await trio.testing.wait_all_tasks_blocked()
        assert done == [2, 3]
    assert [await queue.get(), await queue.get()] == [2, 3]


async def test_close_drains_then_ends_and_refuses_puts() -> None:
    queue: EventQueue[str] = EventQueue(4)
    await queue.put("a")
    queue.close()
    assert await queue.get() == "a"
    with pytest.raises(trio.EndOfChannel):
        await queue.get()
    with pytest.raises(trio.ClosedResourceError):
        await queue.put("b")


async def test_close_wakes_a_waiting_getter() -> None:
    queue: EventQueue[str] = EventQueue(4)
    ended = trio.Event()

    async def get() -> None:
        with pytest.raises(trio.EndOfChannel):
            await queue.get()
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(get)
        await trio.testing.wait_all_tasks_blocked()
        queue.close()
    assert ended.is_set()


def test_a_bound_below_one_is_refused() -> None:
    queue: EventQueue[int] = EventQueue(3)
    with pytest.raises(ValueError, match="at least 1"):
        queue.limit = 0
    assert queue.limit == 3


@given(
    items=st.lists(st.integers(), max_size=50),
    limits=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=10),
)
def test_every_item_comes_out_once_in_order_whatever_the_bounds(
    items: list[int], limits: list[int]
) -> None:
    async def main() -> list[int]:
        queue: EventQueue[int] = EventQueue(limits[0])
        out: list[int] = []

        async def producer() -> None:
            for n, item in enumerate(items):
                queue.limit = limits[n % len(limits)]
                await queue.put(item)
            queue.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            while True:
                try:
                    out.append(await queue.get())
                except trio.EndOfChannel:
                    return out

    assert trio.run(main) == items
