"""A lost libvirt connection, told by the event loop: no close callback, no round trip.

libvirt's remote driver gives its socket one watch in the event loop (``virEventAddHandle``)
and removes it the moment the connection goes: end of file, a socket error, a keepalive
timeout (``virNetClientMarkClose``), or the client's own close. So the connection that added
a watch learns it was lost when that watch is removed while it had not asked to close. This
replaces ``virConnectRegisterCloseCallback`` for the connection's own socket, which costs two
round trips to the daemon per connection (register at open, unregister at close).

The worker thread that opens a connection does it inside :meth:`LossTracker.track`; every
watch and timer that thread adds meanwhile is the connection's. A removal while the
connection's own keepalive timer fires (on the event loop's thread) is a keepalive timeout;
any other is the connection dropping. :meth:`LossWatch.disarm` before closing on purpose.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import attrs

__all__ = ["DROPPED", "KEEPALIVE_TIMEOUT", "LossTracker", "LossWatch"]

#: the reasons :attr:`LossWatch.on_lost` is given
DROPPED = "the connection dropped (end of file or error)"
KEEPALIVE_TIMEOUT = "keepalive timeout"


@attrs.define(eq=False)
class LossWatch:
    """One connection's watches: ``on_lost(reason)`` is called once, from whichever thread
    libvirt removes its socket watch in (never with the event loop's lock held)."""

    on_lost: Callable[[str], None]
    #: the timers added while tracking (libvirt's keepalive timer)
    timers: set[int] = attrs.field(factory=set)
    #: the socket watches the open added (none: an in-process driver, nothing to watch)
    handles: set[int] = attrs.field(factory=set)
    armed: bool = True

    def disarm(self) -> None:
        """The connection is closing on purpose: its watches going is no loss."""
        self.armed = False


class LossTracker:
    """Which :class:`LossWatch` each libvirt watch and timer belongs to (see the module
    docstring); the event loop calls it from its six callbacks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handles: dict[int, LossWatch] = {}
        self._timers: dict[int, LossWatch] = {}
        # per thread: .tracking, the LossWatch being filled; .firing, the timer being run
        self._local = threading.local()

    @contextlib.contextmanager
    def track(self, on_lost: Callable[[str], None]) -> Iterator[LossWatch]:
        """In the thread that opens a connection: its watches and timers added in the block
        are the connection's."""
        local = self._local
        watch, outer = LossWatch(on_lost), getattr(local, "tracking", None)
        local.tracking = watch
        try:
            yield watch
        finally:
            local.tracking = outer

    @contextlib.contextmanager
    def firing(self, timer_id: int) -> Iterator[None]:
        """Around running timer ``timer_id``'s callback."""
        local = self._local
        outer, local.firing = getattr(local, "firing", None), timer_id
        try:
            yield
        finally:
            local.firing = outer

    def handle_added(self, watch_id: int) -> None:
        watch = getattr(self._local, "tracking", None)
        if watch is not None:
            watch.handles.add(watch_id)
            with self._lock:
                self._handles[watch_id] = watch

    def timer_added(self, timer_id: int) -> None:
        watch = getattr(self._local, "tracking", None)
        if watch is not None:
            watch.timers.add(timer_id)
            with self._lock:
                self._timers[timer_id] = watch

    def timer_removed(self, timer_id: int) -> None:
        with self._lock:
            self._timers.pop(timer_id, None)

    def handle_removed(self, watch_id: int) -> None:
        with self._lock:
            watch = self._handles.pop(watch_id, None)
            if watch is None or not watch.armed:
                return
            watch.armed = False
        keepalive = getattr(self._local, "firing", None) in watch.timers
        watch.on_lost(KEEPALIVE_TIMEOUT if keepalive else DROPPED)

    def tracked(self) -> int:
        """How many watches and timers are tracked now (for leftover checks)."""
        with self._lock:
            return len(self._handles) + len(self._timers)
