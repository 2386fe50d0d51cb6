"""A lock whose uncontended path is a few attribute reads."""

from __future__ import annotations

import trio

__all__ = ["Mutex"]


class Mutex:
    """A FIFO lock for the tasks of one connection (the GDB client's request, read and send
    locks; the send turns of the message framing and of xtransport): taking and releasing it
    uncontended are a few
    attribute reads (a :class:`trio.Lock`'s fast path costs microseconds, and each exchange
    takes three locks); a waiter is handed the lock by :meth:`release`, in FIFO order."""

    __slots__ = ("_held", "_waiters", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._waiting = 0  # tasks in acquire's park (a plain int: cheaper to test than the lot)
        self._waiters = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        """True while some task holds it."""
        return self._held

    def try_acquire(self) -> bool:
        """Take it if it is free: True if taken (no checkpoint either way)."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        """Take it, waiting for the holder to release it (cancellable while waiting; a
        checkpoint only when it has to wait)."""
        if not self._held:
            self._held = True
            return
        self._waiting += 1
        try:
            await self._waiters.park()  # woken by release, which hands the lock over
        finally:
            self._waiting -= 1

    def release(self) -> None:
        """Release it, handing it to the longest waiter if any."""
        # (a waiter cancelled but not yet resumed is counted and no longer parked: unpark
        # then finds no one, and the lock is free)
        if not (self._waiting and self._waiters.unpark()):
            self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
