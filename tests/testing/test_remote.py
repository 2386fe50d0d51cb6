"""Proxies across the loop boundary (an engine of no VMs in its own thread): sync and async
context managers, a nursery-holding one entered and left in one engine task, exceptions thrown
into them, iterators and async iterators."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import trio

from virtrio.engine.config import Fleet
from virtrio.testing._remote import EngineThread, Remote


class Thing:
    """Lives in the engine's loop; records which thread and task ran what."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @contextmanager
    def opened(self) -> Iterator[Thing]:
        self.log.append(f"enter in {threading.current_thread().name}")
        try:
            yield self
        finally:
            self.log.append("exit")

    @asynccontextmanager
    async def scoped(self) -> AsyncIterator[str]:
        # a nursery open across the block: __aenter__ and __aexit__ must run in one task
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            try:
                yield "inside"
            except KeyError:
                self.log.append("suppressed KeyError")
            finally:
                nursery.cancel_scope.cancel()

    async def numbers(self) -> AsyncIterator[int]:
        for i in range(3):
            await trio.lowlevel.checkpoint()
            yield i

    def letters(self) -> list[str]:
        return ["a", "b"]

    def __iter__(self) -> Iterator[str]:
        return iter("xy")


@pytest.fixture
def thread() -> Iterator[EngineThread]:
    engine = EngineThread(Fleet()).start()
    try:
        yield engine
    finally:
        engine.close()


async def test_context_managers_and_iterators_cross_loops(thread: EngineThread) -> None:
    thing = Thing()
    remote = Remote(thread, lambda: thing, "thing")

    with remote.opened() as inside:
        assert isinstance(inside, Remote)
        assert inside.letters() == ["a", "b"]
    assert thing.log == ["enter in virtrio-engine", "exit"]

    async with remote.scoped() as value:
        assert value == "inside"
    async with remote.scoped():
        raise KeyError("thrown into the manager, which suppresses it")
    assert thing.log[-1] == "suppressed KeyError"
    # as without the proxy: the manager's nursery wraps what the block raised
    with pytest.raises(ExceptionGroup) as info:
        async with remote.scoped():
            1 / 0  # noqa: B018
    assert info.group_contains(ZeroDivisionError)

    assert [n async for n in remote.numbers()] == [0, 1, 2]
    assert list(remote) == ["x", "y"]

    with pytest.raises(TypeError, match="has no __aenter__"):
        async with remote.letters:
            pass
