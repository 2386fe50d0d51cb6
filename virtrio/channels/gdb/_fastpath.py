"""Bounded adaptive busy-polling for the stub's answer, and a lock whose uncontended path is cheap.

A stub on the same machine answers a packet in a few tens of microseconds. Parking the task on
:func:`trio.lowlevel.wait_readable` under a deadline costs about as much again (a cancel scope,
a pass through the scheduler, ``epoll``, and the wake-up of an idle CPU), so before parking the
reader polls the socket without blocking for a short window (``open_gdb(spin=...)``).

The window adapts (:class:`~virtrio.primitives.SpinPolicy`, shared with the PTY client and
daemon): it follows a few times the latency of the answers that came while polling, up to the
budget, and stops polling while it does not pay (a target that runs for a while before it
stops), probing every 16th wait. While it polls, the event loop runs nothing else: the window
is bounded by the budget and by the call's deadline (and any enclosing cancel scope's), so no
deadline is overrun by it.
"""

from __future__ import annotations

import trio

from virtrio.primitives import SpinPolicy

__all__ = ["DEFAULT_SPIN", "Mutex", "SpinPolicy"]

#: Default busy-poll budget of one wait, in seconds (``open_gdb(spin=...)``).
DEFAULT_SPIN = 200e-6


class Mutex:
    """A lock for the tasks of one connection: taking and releasing it uncontended are a few
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
