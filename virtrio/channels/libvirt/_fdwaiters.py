"""The fd waiters of libvirt's event loop on Trio (see ._eventloop).

One task per file descriptor and direction (Trio allows one waiter each) dispatches to every
handle registered on that fd for that direction. A waiter woken while nobody wants its
direction any more (a call in a worker thread owns the socket meanwhile) parks until interest
comes back. Done with its fd, a waiter task waits for the next one given to it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs
import trio

__all__ = ["IDLE_WAITERS", "READABLE", "WRITABLE", "FdWaiters", "Handle", "IdleWaiter"]

log = logging.getLogger(__name__)

# libvirt's VIR_EVENT_HANDLE_* values (fixed by its ABI; importing libvirt here is avoided so
# the module loads without the extra).
READABLE = 1
WRITABLE = 2


@attrs.define
class Handle:
    """One libvirt handle: an fd watched for ``events`` (READABLE | WRITABLE)."""

    fd: int
    events: int
    cb: Callable[..., Any]
    opaque: Any


@attrs.define(eq=False)
class IdleWaiter:
    """A waiter task between fds: ``job`` (the fd and direction, and its scope) is given to it
    and ``ready`` set."""

    ready: trio.Event = attrs.field(factory=trio.Event)
    job: tuple[tuple[int, int], trio.CancelScope] | None = None


#: waiter tasks kept for the next fd (one per connection usually; more are let go)
IDLE_WAITERS = 8


class FdWaiters:
    """The event loop's waiter tasks (a mixin of ``_TrioEventImpl``, whose state it uses)."""

    _lock: threading.Lock
    _handles: dict[int, Handle]
    _waiters: dict[tuple[int, int], trio.CancelScope]
    _parked: dict[tuple[int, int], trio.Event]
    _idle: list[IdleWaiter]

    def _kick_locked(self) -> None:
        raise NotImplementedError

    def _forget(self, key: tuple[int, int], scope: trio.CancelScope) -> None:
        if self._waiters.get(key) is scope:
            del self._waiters[key]
            with self._lock:
                self._kick_locked()  # the tables may want this waiter back

    async def _serve_fds(self, key: tuple[int, int], scope: trio.CancelScope) -> None:
        """A waiter task: waits on one fd and direction until cancelled, then on the next fd
        it is given (connections come and go; their fds are waited on by the same tasks)."""
        while True:
            await self._wait_fd(key[0], key[1], scope)
            if len(self._idle) >= IDLE_WAITERS:
                return
            idle = IdleWaiter()
            self._idle.append(idle)
            await idle.ready.wait()
            assert idle.job is not None
            key, scope = idle.job

    async def _wait_fd(self, fd: int, direction: int, scope: trio.CancelScope) -> None:
        wait = trio.lowlevel.wait_readable if direction == READABLE else trio.lowlevel.wait_writable
        key = (fd, direction)
        try:
            with scope:
                while True:
                    try:
                        await wait(fd)
                    except (trio.ClosedResourceError, OSError):
                        return
                    with self._lock:
                        targets = [
                            (watch, h)
                            for watch, h in self._handles.items()
                            if h.fd == fd and h.events & direction
                        ]
                    if not targets:
                        # interest dropped (a call in another thread owns the socket for now)
                        parked = self._parked[key] = trio.Event()
                        await parked.wait()
                        continue
                    for watch, handle in targets:
                        with self._lock:
                            if self._handles.get(watch) is not handle:
                                continue
                            if not handle.events & direction:
                                continue
                        try:
                            handle.cb(watch, fd, direction, handle.opaque)
                        except Exception:
                            log.exception("libvirt handle callback failed (fd %d)", fd)
        finally:
            self._parked.pop(key, None)
            self._forget(key, scope)
