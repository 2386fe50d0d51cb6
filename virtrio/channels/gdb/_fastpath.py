"""Bounded adaptive busy-polling for the stub's answer, and a lock whose uncontended path is cheap
(:class:`~virtrio.primitives.Mutex`).

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

from virtrio.primitives import Mutex, SpinPolicy

__all__ = ["DEFAULT_SPIN", "Mutex", "SpinPolicy"]

#: Default busy-poll budget of one wait, in seconds (``open_gdb(spin=...)``).
DEFAULT_SPIN = 200e-6
