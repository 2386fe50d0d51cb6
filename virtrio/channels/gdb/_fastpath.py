"""Bounded adaptive busy-polling for the stub's answer, and a lock whose uncontended path is cheap.

A stub on the same machine answers a packet in a few tens of microseconds. Parking the task on
:func:`trio.lowlevel.wait_readable` under a deadline costs about as much again (a cancel scope,
a pass through the scheduler, ``epoll``, and the wake-up of an idle CPU), so before parking the
reader polls the socket without blocking for a short window (``open_gdb(spin=...)``).

The window adapts (:class:`SpinPolicy`): it follows a few times the latency of the answers that
came while polling, up to the budget, and doubles after an answer that came too late for it.
When spinning stops paying (fewer than one wait in four answered within the window, as a
target that runs for a while before it stops), the reader parks at once and only every 16th
wait polls again, with the whole budget, to find out whether the stub has become fast again.

Between polls the CPU is offered to other threads (``sched_yield``): on a loaded machine the
stub may be queued on the very CPU the poller holds. While it polls, the event loop runs
nothing else: the window is bounded by the budget and by
the call's deadline (and any enclosing cancel scope's), so no deadline is overrun by it.
"""

from __future__ import annotations

import os
import time

import trio

__all__ = ["DEFAULT_SPIN", "Mutex", "SpinPolicy"]

#: Default busy-poll budget of one wait, in seconds (``open_gdb(spin=...)``).
DEFAULT_SPIN = 200e-6
#: The window is this many times the recent answers' latency (up to the budget).
_HEADROOM = 4.0
#: The shortest window (a stub answering at once would otherwise shrink it to nothing).
_MIN_WINDOW = 20e-6
#: Spinning continues while at least this share of the recent spins caught the answer.
_PAYS = 0.25
#: While it does not pay, one wait in this many probes with the whole budget.
_PROBE_EVERY = 16
#: Weight of the latest wait in the running averages.
_WEIGHT = 1 / 8


def _no_yield() -> None:
    pass


#: Between polls the CPU is offered to any other runnable thread (``sched_yield``; it returns at
#: once when there is none): on a busy machine the stub is often queued on the CPU the poller
#: holds, and a bare spin would delay the very answer it waits for. It also keeps the poll's CPU
#: cost near that of a blocking read.
_yield_cpu = getattr(os, "sched_yield", _no_yield)


class SpinPolicy:
    """How long the next wait busy-polls, learned from the waits before it.

    Args:
        budget: the most one wait polls, in seconds; 0 never polls.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.window = budget  # how long the next wait polls while spinning pays
        self._pays = 1.0  # running share of the spins that caught their answer
        self._waits_off = 0  # waits parked at once since the last probe
        #: Waits whose answer came while polling, and those that polled in vain (for tests and
        #: benchmarks).
        self.caught = 0
        self.missed = 0

    def next_window(self) -> float:
        """The window of the next wait (0: park at once)."""
        if self.budget <= 0:
            return 0.0
        if self._pays >= _PAYS:
            return self.window
        self._waits_off += 1
        if self._waits_off < _PROBE_EVERY:
            return 0.0
        self._waits_off = 0
        return self.budget

    def record(self, latency: float | None) -> None:
        """After a wait that polled: the answer's latency, or None when none came in time."""
        if latency is None:
            self.missed += 1
            self._pays -= self._pays * _WEIGHT
            self.window = min(self.budget, self.window * 2)
        else:
            self.caught += 1
            self._pays += (1.0 - self._pays) * _WEIGHT
            target = min(self.budget, max(_MIN_WINDOW, latency * _HEADROOM))
            self.window += (target - self.window) * _WEIGHT
            if self.window < latency:  # never below what just worked
                self.window = min(self.budget, latency * _HEADROOM)

    def poll(self, fd: int, size: int, deadline: float) -> bytes | None:
        """Read ``fd`` (non-blocking) until bytes come or the window or ``deadline`` (Trio
        time: the caller's, with any enclosing cancel scope's deadline already taken into
        account) has passed: the bytes (``b""`` at the end of the stream), or None."""
        window = self.next_window()
        if window <= 0:
            return None
        limit = deadline - trio.current_time()
        if limit < window:
            if limit <= 0:
                return None
            window = limit
        read = os.read
        clock = time.perf_counter
        start = clock()
        end = start + window
        while True:
            try:
                data = read(fd, size)
            except BlockingIOError:
                if clock() >= end:
                    self.record(None)
                    return None
                _yield_cpu()  # the stub may be waiting for this very CPU
                continue
            self.record(clock() - start)
            return data


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
