"""Bounded, adaptive busy-polling for an answer that usually comes within microseconds:
:class:`SpinPolicy`.

A peer on the same machine (a GDB stub, a program echoing a keystroke on a PTY, the PTY daemon
forwarding that echo) answers in a few tens of microseconds. Parking the task on
:func:`trio.lowlevel.wait_readable` costs about as much again (a cancel scope, a pass through
the scheduler, ``epoll``), and on a virtual machine the wake-up of a halted CPU costs tens of
microseconds more. So before parking, a reader may poll its descriptor without blocking for a
short window::

    spin = SpinPolicy(100e-6)                 # at most 100 µs per wait; 0 never polls
    data = spin.poll(fd, 65536, deadline)     # the bytes, or None: park as usual
    got = spin.poll_call(read_nowait, deadline)   # the same with any non-blocking read

The window adapts: it follows a few times the latency of the answers that came while polling,
up to the budget, and doubles after an answer that came too late for it. When polling stops
paying (fewer than one wait in four answered within the window: a peer that is slow, or
nothing to answer), the reader parks at once and only every 16th wait polls again, with the
whole budget, to find out whether the peer has become fast again.

Between polls the CPU is offered to other threads and processes (``sched_yield``): on a loaded
machine the peer is often queued on the very CPU the poller holds. While it polls, the event
loop runs nothing else, so the window is bounded by the budget and by ``deadline`` (pass the
caller's, with any enclosing cancel scope's). With ``fair=True`` it is bounded by Trio's next
timer too, and it does not poll at all while another task is ready to run: a spin then only
ever spends time the event loop would have spent asleep in ``epoll``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import TypeVar

import trio

__all__ = ["SpinPolicy"]

_T = TypeVar("_T")

#: The window is this many times the recent answers' latency (up to the budget).
_HEADROOM = 4.0
#: The shortest window (a peer answering at once would otherwise shrink it to nothing).
_MIN_WINDOW = 20e-6
#: Polling continues while at least this share of the recent spins caught the answer.
_PAYS = 0.25
#: While it does not pay, one wait in this many probes with the whole budget.
_PROBE_EVERY = 16
#: Weight of the latest wait in the running averages.
_WEIGHT = 1 / 8


def _no_yield() -> None:
    pass


#: Between polls the CPU is offered to any other runnable thread (``sched_yield``; it returns at
#: once when there is none): a bare spin would delay the very answer it waits for when the peer
#: is queued on this CPU. It also keeps the poll's CPU cost near that of a blocking read.
_yield_cpu = getattr(os, "sched_yield", _no_yield)


class SpinPolicy:
    """How long the next wait busy-polls, learned from the waits before it (see the module).

    Args:
        budget: the most one wait polls, in seconds; 0 never polls.
        fair: poll only while no other Trio task is ready to run, and never past Trio's next
            timer (a reader in a server with many connections); False polls whenever the
            window says so (a client waiting for its own answer).
    """

    __slots__ = (
        "_pays",
        "_waits_off",
        "budget",
        "caught",
        "declined",
        "fair",
        "missed",
        "window",
    )

    def __init__(self, budget: float, *, fair: bool = False) -> None:
        self.budget = budget
        self.fair = fair
        self.window = budget  # how long the next wait polls while polling pays
        self._pays = 1.0  # running share of the spins that caught their answer
        self._waits_off = 0  # waits parked at once since the last probe
        #: Waits whose answer came while polling, those that polled in vain, and those cut
        #: short or not polled for because other work was ready (for tests and benchmarks).
        self.caught = 0
        self.missed = 0
        self.declined = 0

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

    def poll(self, fd: int, size: int, deadline: float, *, ready_ok: int = 0) -> bytes | None:
        """Read ``fd`` (non-blocking) until bytes come or the window or ``deadline`` (Trio
        time) has passed: the bytes (``b""`` at the end of the stream), or None."""

        def read() -> bytes | None:
            try:
                return os.read(fd, size)
            except BlockingIOError:
                return None

        return self.poll_call(read, deadline, ready_ok=ready_ok)

    def poll_call(
        self,
        read: Callable[[], _T | None],
        deadline: float = math.inf,
        *,
        ready_ok: int = 0,
        stop: Callable[[], bool] | None = None,
    ) -> _T | None:
        """Call ``read`` (non-blocking: None while nothing has come) until it returns something
        or the window or ``deadline`` (Trio time) has passed: what it returned, or None.

        ``ready_ok``: tasks the caller itself just made ready and knows will only park again
        (a fair policy still polls while no more than these are ready). ``stop``, asked after
        each empty read: true ends the poll at once (other work has come; nothing is learnt)."""
        window = self.next_window()
        if window <= 0:
            return None
        if self.fair:
            stats = trio.lowlevel.current_statistics()
            if stats.tasks_runnable > ready_ok:
                self.declined += 1  # others are ready: they run, and this parks (not learnt)
                return None
            window = min(window, stats.seconds_to_next_deadline)
        limit = deadline - trio.current_time()
        if limit < window:
            if limit <= 0:
                return None
            window = limit
        clock = time.perf_counter
        start = clock()
        end = start + window
        while (got := read()) is None:
            if clock() >= end:
                self.record(None)
                return None
            if stop is not None and stop():
                self.declined += 1
                return None
            _yield_cpu()  # the peer may be waiting for this very CPU
        self.record(clock() - start)
        return got
