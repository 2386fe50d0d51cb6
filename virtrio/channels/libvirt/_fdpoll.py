"""The file descriptors of libvirt's event loop on Trio (see ._eventloop): an epoll set of its own.

libvirt's handles are registered in an epoll set of the loop's (``select.epoll``), which one
Trio task waits on as a single descriptor. Interest changes go to the set at once, from
whichever thread libvirt calls in (``epoll_ctl`` is thread-safe), and wake nobody: libvirt's
remote driver drops and restores its socket's interest around every call made from another
thread, and that costs the Trio thread nothing. A descriptor nobody wants events of is not in
the set (so its hang-up cannot wake the loop while a call in another thread owns it). Trio never
waits on libvirt's descriptors themselves, so none needs ``notify_closing`` before libvirt
closes it: the handle's removal takes it out of the set first.

When the set is readable, the task takes its events (``poll(0)``) and calls every handle that
still wants them, on the Trio thread (level-triggered, like libvirt's own loop).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any

import attrs
import trio

__all__ = ["READABLE", "WRITABLE", "FdPoll", "Handle"]

log = logging.getLogger(__name__)

# libvirt's VIR_EVENT_HANDLE_* values (fixed by its ABI; importing libvirt here is avoided so
# the module loads without the extra).
READABLE = 1
WRITABLE = 2

#: what a handle's events ask of epoll
_EPOLL_BITS = ((READABLE, select.EPOLLIN), (WRITABLE, select.EPOLLOUT))


@attrs.define
class Handle:
    """One libvirt handle: an fd watched for ``events`` (READABLE | WRITABLE)."""

    fd: int
    events: int
    cb: Callable[..., Any]
    opaque: Any


class FdPoll:
    """The event loop's epoll set and its task (a mixin of ``_TrioEventImpl``, whose state it
    uses). The set exists while a Trio run is attached; handles added meanwhile join it then."""

    _lock: threading.Lock
    _handles: dict[int, Handle]
    # the set, while a run is attached; and what it was asked for each fd in it
    _epoll: select.epoll | None
    _polled: dict[int, int]

    def _poll_fd_locked(self, fd: int) -> None:
        """Give ``fd`` the interest its handles want now (the lock held)."""
        epoll = self._epoll
        if epoll is None:
            return
        wanted = 0
        for handle in self._handles.values():
            if handle.fd == fd:
                wanted |= handle.events
        mask = 0
        for bit, flag in _EPOLL_BITS:
            if wanted & bit:
                mask |= flag
        had = self._polled.get(fd, 0)
        if mask == had:
            return
        if not mask:
            del self._polled[fd]
            with contextlib.suppress(OSError):  # (closed already: the kernel dropped it)
                epoll.unregister(fd)
            return
        try:
            if had:
                self._polled[fd] = mask
                epoll.modify(fd, mask)
            else:
                self._polled[fd] = mask
                epoll.register(fd, mask)
        except OSError:  # a descriptor epoll cannot watch (or gone): nothing will come of it
            self._polled.pop(fd, None)
            log.exception("libvirt handle on fd %d cannot be watched", fd)

    def _open_poll(self) -> select.epoll:
        """On attach: a new set with every handle's fd in it."""
        epoll = select.epoll()
        with self._lock:
            self._epoll, self._polled = epoll, {}
            for fd in {handle.fd for handle in self._handles.values()}:
                self._poll_fd_locked(fd)
        return epoll

    def _close_poll(self) -> None:
        """On detach: the set goes (the next run makes a new one)."""
        with self._lock:
            epoll, self._epoll = self._epoll, None
            self._polled = {}
        if epoll is not None:
            epoll.close()

    async def _serve_poll(self, epoll: select.epoll) -> None:
        """The task that waits on the set and calls the handles its events are for."""
        while True:
            await trio.lowlevel.wait_readable(epoll.fileno())
            for fd, flags in epoll.poll(0):
                # as Trio does: a hang-up or an error is for both directions
                if flags & ~select.EPOLLOUT:
                    self._dispatch(fd, READABLE)
                if flags & ~select.EPOLLIN:
                    self._dispatch(fd, WRITABLE)

    def _dispatch(self, fd: int, direction: int) -> None:
        with self._lock:
            targets = [(w, h) for w, h in self._handles.items() if h.fd == fd]
        for watch, handle in targets:
            with self._lock:  # removed or no longer interested since: not called
                if self._handles.get(watch) is not handle or not handle.events & direction:
                    continue
            try:
                handle.cb(watch, fd, direction, handle.opaque)
            except Exception:
                log.exception("libvirt handle callback failed (fd %d)", fd)
