"""libvirt's event loop (``virEventRegisterImpl``) implemented on Trio.

libvirt needs an event loop for keepalive, events and non-blocking streams. It asks for one
through six callbacks (add/update/remove a handle, add/update/remove a timeout) that it calls
from whichever thread made an API call. This module implements them on Trio:

* registered once per process (:func:`ensure_event_loop`); the loop is then attached to the
  current Trio run as a system task and detached when the run ends;
* the callbacks may come from any thread: ids are handed out at once under a lock and the
  tables updated; the Trio thread is asked (``TrioToken.run_sync_soon``) only for what must run
  there (the timer task told of a changed timer, free callbacks);
* the handles' descriptors are in an epoll set of the loop's own, changed at once from any
  thread and waited on by one task (:mod:`._fdpoll`): an interest change wakes nobody;
* timers: ``0`` fires on every pass of the Trio loop, ``-1`` is off, ``n`` every ``n`` ms;
  an update restarts the period (as libvirt's own loop does); one task keeps time for all
  of them, so a connection's keepalive timer costs no task of its own;
* free callbacks are always deferred to the Trio thread, never run inside a remove call; one
  asked for while no Trio run is attached (a connection's last domain object collected after
  the run, or a connection used outside Trio) runs at once in a short-lived thread instead, so
  the client's socket and its eventfd are closed then, not at the next run.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import trio

from virtrio.errors import LocalProtocolError

from ._fdpoll import FdPoll, Handle as _Handle
from ._losses import LossTracker, LossWatch
from ._timers import Timer as _Timer, TimerTask

__all__ = [
    "EventLoopStats",
    "Handoff",
    "batched_kicks",
    "ensure_event_loop",
    "event_loop_stats",
    "take_handoff",
    "track_losses",
]

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class Handoff:
    """A blocking call's held-back wake-up, handed to the Trio task waiting for its result: the
    result's own wake-up then carries it (see :meth:`_TrioEventImpl.batched_kicks`)."""

    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _pending: bool = False
    _gone: bool = False

    def hold(self) -> bool:
        """In the worker thread: hand the wake-up over; False if nobody waits any more."""
        with self._lock:
            self._pending = not self._gone
            return self._pending

    def give_up(self) -> bool:
        """On the Trio thread: stop waiting; True if a wake-up was handed over."""
        with self._lock:
            self._gone = True
            pending, self._pending = self._pending, False
            return pending


@attrs.frozen
class EventLoopStats:
    """What the libvirt event loop holds right now (for leftover checks and debugging)."""

    #: handles libvirt has registered and not removed
    handles: int
    #: timers libvirt has registered and not removed
    timers: int
    #: file descriptors in the loop's epoll set (those some handle wants events of)
    watched_fds: int
    #: timers the loop keeps time for (those not at -1)
    timer_tasks: int
    #: free callbacks not yet run
    pending_frees: int


class _TrioEventImpl(FdPoll, TimerTask):
    """The process-wide implementation; see the module docstring."""

    def __init__(self, free: Callable[[Any], None] | None = None) -> None:
        #: runs libvirt's free callback for an opaque (injectable for tests)
        self._free = free
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._handles: dict[int, _Handle] = {}
        self._timers: dict[int, _Timer] = {}
        self._frees: list[Any] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._scheduled = False
        self._registered = False
        # Trio-thread state
        self._nursery: trio.Nursery | None = None
        # the handles' epoll set while a run is attached, and each fd's interest in it
        self._epoll: select.epoll | None = None
        self._polled: dict[int, int] = {}
        # the timer task's sleep, and whether a timer changed since it began
        self._timer_sleep: trio.CancelScope | None = None
        self._retime = False
        # per worker thread: None, or whether a kick was held back by batched_kicks()
        self._held = threading.local()
        #: which connection each watch belongs to (see ._losses)
        self.losses = LossTracker()

    # -- the six libvirt callbacks (any thread) ------------------------------------------------

    def add_handle(self, fd: int, events: int, cb: Callable[..., Any], opaque: Any) -> int:
        with self._lock:
            watch = next(self._ids)
            self._handles[watch] = _Handle(fd, events, cb, opaque)
            self._poll_fd_locked(fd)  # no Trio-side work: the task waits on the whole set
        self.losses.handle_added(watch)
        return watch

    def update_handle(self, watch: int, events: int) -> None:
        with self._lock:
            handle = self._handles.get(watch)
            if handle is not None and handle.events != events:
                # libvirt's remote driver drops and restores interest around every call made
                # from another thread: this path is hot, and wakes nobody
                handle.events = events
                self._poll_fd_locked(handle.fd)

    def remove_handle(self, watch: int) -> int:
        with self._lock:
            handle = self._handles.pop(watch, None)
            if handle is None:
                return -1
            self._poll_fd_locked(handle.fd)  # out of the set before libvirt may close it
            self._frees.append(handle.opaque)
            self._kick_locked()
        self.losses.handle_removed(watch)
        return 0

    def add_timeout(self, interval: int, cb: Callable[..., Any], opaque: Any) -> int:
        with self._lock:
            timer_id = next(self._ids)
            self._timers[timer_id] = _Timer(interval, cb, opaque)
            self._retime = True
            self._kick_locked()
        self.losses.timer_added(timer_id)
        return timer_id

    def update_timeout(self, timer_id: int, interval: int) -> None:
        with self._lock:
            timer = self._timers.get(timer_id)
            if timer is None:
                return
            timer.restarted_at = time.monotonic()
            if interval == timer.interval:
                # Same period: the timer task sees the restart when it wakes and sleeps on.
                # libvirt restarts the keepalive timer on every message: this path is hot.
                return
            timer.interval = interval
            self._retime = True
            self._kick_locked()

    def remove_timeout(self, timer_id: int) -> int:
        with self._lock:
            timer = self._timers.pop(timer_id, None)
            if timer is None:
                return -1
            self._frees.append(timer.opaque)
            self._kick_locked()
        self.losses.timer_removed(timer_id)
        return 0

    @contextlib.contextmanager
    def batched_kicks(self, handoff: Handoff | None = None) -> Iterator[None]:
        """Hold back the Trio thread's wake-ups that this thread's callbacks ask for until the
        block ends, then send at most one; or, given a ``handoff``, leave it to the caller
        waiting for this thread's result (:meth:`take_handoff`), whose wake-up is sent anyway.

        A blocking call in a worker thread makes several callbacks (open adds a handle and a
        keepalive timer, every call drops and restores the socket's interest, close removes
        both); waking the Trio thread for each one mid-call makes it contend with the worker
        for the GIL. Nothing on the Trio side needs the changes before the call returns: the
        calling thread owns the socket meanwhile.
        """
        held = self._held
        if getattr(held, "kick", None) is not None:  # nested: the outer block sends it
            yield
            return
        held.kick = False
        try:
            yield
        finally:
            kick, held.kick = held.kick, None
            if kick and not (handoff is not None and handoff.hold()):
                with self._lock:
                    self._kick_locked()

    @trio.lowlevel.enable_ki_protection
    def take_handoff(self, handoff: Handoff) -> None:
        """On the Trio thread, once the call given ``handoff`` has returned or been given up
        on: reconcile now if it held a wake-up back (no wake-up of its own, no pass of the
        loop); a call still running will send its own."""
        if handoff.give_up() and not self._apply():
            with self._lock:
                self._kick_locked()

    def _kick_locked(self) -> None:
        if self._token is not None and getattr(self._held, "kick", None) is not None:
            self._held.kick = True
            return
        if self._token is None:
            # No run to defer to. libvirt asks that a free callback run from a clean stack
            # (it may hold the connection's lock in the remove call): another thread is one.
            frees, self._frees = self._frees, []
            if frees:
                threading.Thread(
                    target=self._run_frees, args=(frees,), name="virtrio-libvirt-free"
                ).start()
            return
        if self._scheduled:
            return
        try:
            self._token.run_sync_soon(self._apply)
        except trio.RunFinishedError:  # the run is ending; the driver's exit cleans up
            return
        self._scheduled = True

    # -- attach / detach -------------------------------------------------------------------

    def register(self) -> None:
        if self._registered:
            return
        import libvirt

        libvirt.virEventRegisterImpl(
            self.add_handle,
            self.update_handle,
            self.remove_handle,
            self.add_timeout,
            self.update_timeout,
            self.remove_timeout,
        )
        self._registered = True

    def attach(self, *, register: bool = True) -> None:
        token = trio.lowlevel.current_trio_token()
        with self._lock:
            if self._token is token:
                return
            if self._token is not None:
                raise LocalProtocolError(
                    "the libvirt event loop is attached to another Trio run (another thread);"
                    " libvirt allows one event loop per process"
                )
            self._token = token
        if register:
            self.register()
        # the set now: handles added before the driver's first step are in it at once
        epoll = self._open_poll()
        trio.lowlevel.spawn_system_task(self._driver, epoll, name="virtrio-libvirt-event-loop")

    async def _driver(self, epoll: select.epoll) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                with self._lock:
                    self._scheduled = True
                nursery.start_soon(self._run_timers)
                nursery.start_soon(self._serve_poll, epoll)
                try:
                    self._apply()
                    await trio.sleep_forever()
                finally:
                    self._nursery = None  # closed to new tasks from here on
                    self._timer_sleep = None
        finally:
            self._close_poll()
            with self._lock:
                self._token = None
                self._scheduled = False
                frees, self._frees = self._frees, []
            self._run_frees(frees)

    # -- the Trio side ---------------------------------------------------------------------

    def _apply(self) -> bool:
        """Wake the timer task if a timer changed, run the deferred frees. False: no loop to
        do it in (not started, or ended)."""
        nursery = self._nursery
        with self._lock:
            self._scheduled = False
            if nursery is None:
                return False
            retime, self._retime = self._retime, False
            frees, self._frees = self._frees, []
        if retime and self._timer_sleep is not None:
            # the timer task's next wake-up, worked out again: no wake-up now unless one is due
            due, wait = self._due_timers()
            self._timer_sleep.deadline = -math.inf if due else trio.current_time() + wait
        self._run_frees(frees)
        return True

    def _run_frees(self, frees: list[Any]) -> None:
        if not frees:
            return
        free = self._free
        if free is None:
            import libvirt

            free = self._free = libvirt.virEventInvokeFreeCallback
        for opaque in frees:
            try:
                free(opaque)
            except Exception:
                log.exception("libvirt free callback failed")

    def stats(self) -> EventLoopStats:
        with self._lock:
            return EventLoopStats(
                handles=len(self._handles),
                timers=len(self._timers),
                watched_fds=len(self._polled),
                timer_tasks=sum(1 for t in self._timers.values() if t.interval >= 0),
                pending_frees=len(self._frees),
            )


_IMPL = _TrioEventImpl()


def ensure_event_loop() -> None:
    """Register virtrio's Trio event loop with libvirt (once per process) and run it here.

    Call it from inside ``trio.run`` before opening a libvirt connection (every virtrio opener
    does). The loop runs as a system task of the current run until the run ends; libvirt objects
    opened in a later run are served by that run's loop.

    Raises:
        LocalProtocolError: the loop is already running in a Trio run on another thread.
    """
    _IMPL.attach()


def event_loop_stats() -> EventLoopStats:
    """Counts of what the libvirt event loop holds now (all zero once every connection is closed
    and its callbacks have been freed)."""
    return _IMPL.stats()


def batched_kicks(handoff: Handoff | None = None) -> contextlib.AbstractContextManager[None]:
    """In a worker thread making a blocking libvirt call: one wake-up of the event loop for
    the whole call, or none with a ``handoff`` (see :meth:`_TrioEventImpl.batched_kicks`)."""
    return _IMPL.batched_kicks(handoff)


def take_handoff(handoff: Handoff) -> None:
    """On the Trio thread after the call: see :meth:`_TrioEventImpl.take_handoff`."""
    _IMPL.take_handoff(handoff)


def track_losses(on_lost: Callable[[str], None]) -> contextlib.AbstractContextManager[LossWatch]:
    """In the worker thread opening a libvirt connection: the watches it adds in the block are
    the connection's, and their removal by libvirt calls ``on_lost(reason)`` (see ._losses)."""
    return _IMPL.losses.track(on_lost)
