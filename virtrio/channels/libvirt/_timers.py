"""The timers of libvirt's event loop on Trio (see ._eventloop): one task keeps time for all.

``0`` fires on every pass of the Trio loop, ``-1`` is off, ``n`` every ``n`` ms from the last
restart (libvirt restarts its keepalive timer on every message: a restart with the same period
only moves :attr:`Timer.restarted_at`, and the task, waking at the old deadline, sleeps on).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

if TYPE_CHECKING:
    from ._losses import LossTracker

__all__ = ["Timer", "TimerTask"]

log = logging.getLogger(__name__)


@attrs.define
class Timer:
    """One libvirt timeout."""

    interval: int
    cb: Callable[..., Any]
    opaque: Any
    #: ``time.monotonic()`` when the current period started (updates restart it)
    restarted_at: float = attrs.field(factory=time.monotonic)


class TimerTask:
    """The event loop's timer task (a mixin of ``_TrioEventImpl``, whose state it uses)."""

    _lock: threading.Lock
    _timers: dict[int, Timer]
    _timer_sleep: trio.CancelScope | None
    losses: LossTracker

    async def _run_timers(self) -> None:
        """Fire the due timers; sleep until the next one is due or a timer changes."""
        while True:
            due, wait = self._due_timers()
            for tid, timer in due:
                with self._lock:
                    if self._timers.get(tid) is not timer:
                        continue  # removed by a callback fired before it
                try:
                    with self.losses.firing(tid):
                        timer.cb(tid, timer.opaque)
                except Exception:
                    log.exception("libvirt timer callback failed")
                with self._lock:
                    timer.restarted_at = time.monotonic()
            if due:  # a 0 timer fires once per pass of the Trio loop
                await trio.lowlevel.checkpoint()
                continue
            with trio.CancelScope(deadline=trio.current_time() + wait) as sleep:
                self._timer_sleep = sleep
                await trio.sleep_forever()
            self._timer_sleep = None

    def _due_timers(self) -> tuple[list[tuple[int, Timer]], float]:
        """The timers due now, and the seconds until the next one is (time.monotonic)."""
        now, wait, due = time.monotonic(), math.inf, []
        with self._lock:
            for tid, timer in self._timers.items():
                if timer.interval < 0:
                    continue
                left = timer.restarted_at + timer.interval / 1000 - now
                if timer.interval == 0 or left <= 0:
                    due.append((tid, timer))
                else:
                    wait = min(wait, left)
        return due, wait
