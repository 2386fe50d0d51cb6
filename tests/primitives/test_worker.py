"""run_in_worker: a blocking call in a thread of Trio's cache, with a limiter and cancellation."""

from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from virtrio.primitives import run_in_worker


async def test_returns_the_result_from_another_thread() -> None:
    assert await run_in_worker(threading.get_ident) != threading.get_ident()


async def test_raises_the_functions_exception() -> None:
    def fail() -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        await run_in_worker(fail)


async def test_a_cancelled_caller_never_starts_the_call() -> None:
    ran = []
    with trio.CancelScope() as scope:
        scope.cancel()
        await run_in_worker(lambda: ran.append(1))
    assert scope.cancelled_caught
    assert ran == []


async def test_the_limiter_holds_a_token_per_running_thread_even_once_abandoned() -> None:
    limiter = trio.CapacityLimiter(1)
    release = threading.Event()

    def blocked() -> str:
        release.wait(10)
        return "late"

    with trio.move_on_after(0.05) as scope:
        await run_in_worker(blocked, limiter=limiter, abandon_on_cancel=True)
    assert scope.cancelled_caught  # the caller left at once...
    assert limiter.borrowed_tokens == 1  # ...the thread still runs, and holds its token
    release.set()
    with trio.fail_after(10):
        async with limiter:  # given back once the thread returned
            pass


async def test_without_abandoning_cancellation_waits_for_the_thread() -> None:
    release = threading.Event()

    def blocked() -> str:
        release.wait(10)
        return "finished"

    results: list[str] = []

    async def call(scope: trio.CancelScope) -> None:
        with scope:
            results.append(await run_in_worker(blocked))
            await trio.lowlevel.checkpoint()  # the cancellation is seen here
            results.append("not reached")

    scope = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, scope)
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert results == []  # still waiting for the thread, not abandoned
        release.set()
    assert results == ["finished"]
    assert scope.cancelled_caught


async def test_a_full_limiter_makes_the_next_call_wait() -> None:
    limiter = trio.CapacityLimiter(1)
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        release.wait(10)
        order.append("first")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: run_in_worker(first, limiter=limiter))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(lambda: run_in_worker(lambda: order.append("second"), limiter=limiter))
        await trio.testing.wait_all_tasks_blocked()
        assert order == []  # the second waits for the token, not for a thread
        assert limiter.statistics().tasks_waiting == 1
        release.set()
    assert order == ["first", "second"]
