"""The PTY client's event queue: a FIFO whose bound a subscription can set while it is open."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

import trio

__all__ = ["EventQueue"]

T = TypeVar("T")


class EventQueue(Generic[T]):
    """Bounded FIFO between the client's reader task and its subscriptions.

    :meth:`put` waits while ``limit`` items are queued, which is what stops the reader reading
    its socket (and makes the daemon warn a slow client); nothing is ever dropped. Unlike a
    memory channel the bound can change while items are queued (``events(max_queue=)``).
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[T] = deque()
        self._limit = max(1, limit)
        self._closed = False
        self._putters = trio.lowlevel.ParkingLot()
        self._getters = trio.lowlevel.ParkingLot()

    @property
    def limit(self) -> int:
        """How many items may wait before :meth:`put` waits."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"max_queue must be at least 1, not {value!r}")
        self._limit = value
        self._putters.unpark_all()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def getters(self) -> int:
        """Tasks waiting in :meth:`get`."""
        return len(self._getters)

    def has_room(self) -> bool:
        """Whether :meth:`put_nowait` may queue an item now (fewer than ``limit`` wait)."""
        return len(self._items) < self._limit

    def put_nowait(self, item: T) -> None:
        """Queue ``item`` now: the caller checked :meth:`has_room` (the bound is not checked).

        Raises:
            trio.ClosedResourceError: the queue was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("the event queue is closed")
        self._items.append(item)
        self._getters.unpark()

    async def wait_room(self) -> None:
        """Return once :meth:`has_room` (or the queue is closed); a checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.has_room() or self._closed:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while not self.has_room() and not self._closed:
            await self._putters.park()

    async def put(self, item: T) -> None:
        """Queue ``item``, first waiting for room.

        Raises:
            trio.ClosedResourceError: the queue was closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) >= self._limit and not self._closed:
            await self._putters.park()
        if self._closed:
            raise trio.ClosedResourceError("the event queue is closed")
        self._items.append(item)
        self._getters.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def get(self) -> T:
        """The oldest item, waiting for one.

        Raises:
            trio.EndOfChannel: the queue was closed and is empty.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._items:
            while not self._items:
                if self._closed:
                    raise trio.EndOfChannel
                await self._getters.park()
            # parked: that was the schedule point (as a memory channel's receive)
            item = self._items.popleft()
            self._putters.unpark()
            return item
        item = self._items.popleft()
        self._putters.unpark()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def get_nowait(self) -> T:
        """The oldest item, now.

        Raises:
            trio.WouldBlock: the queue is empty.
        """
        if not self._items:
            raise trio.WouldBlock
        item = self._items.popleft()
        self._putters.unpark()
        return item

    def close(self) -> None:
        """No more items: getters drain what is queued, then get EndOfChannel."""
        self._closed = True
        self._putters.unpark_all()
        self._getters.unpark_all()
