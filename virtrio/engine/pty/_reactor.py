"""One task that polls every session's PTY and pidfd: :class:`Reactor`.

An idle session costs no Trio task, no coroutine frames and no Trio I/O registration: its two
descriptors sit in the reactor's own epoll set (kernel memory), and the reactor waits, as one
Trio task, on that set's descriptor, which is readable whenever one of them is. Each wake-up
then runs the callbacks of the descriptors that are ready, synchronously: a PTY's reads its
output and publishes it (see :mod:`._session`), a pidfd's reaps the exit. The set is
level-triggered, so a callback that leaves data unread is simply called again on the next round,
after the other tasks had their turn. A callback returns true when it read a lot (a flood):
more is likely waiting, so the next round looks at once (after a checkpoint) instead of going
through Trio's epoll (a registration and a wait per round)::

    reactor = Reactor()
    nursery.start_soon(reactor.run)
    reactor.add(fd, on_readable)        # on_readable() -> bool | None, while fd is readable
    reactor.remove(fd)                  # before closing fd
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable

import trio

__all__ = ["Reactor"]

log = logging.getLogger(__name__)

#: Descriptors handled per round at most (the rest wait for the next round: fairness).
_MAX_EVENTS = 64


class Reactor:
    """Calls ``callback()`` while its descriptor is readable (or hung up); see the module."""

    __slots__ = ("_callbacks", "_epoll")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], bool | None]] = {}

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, fd: int, callback: Callable[[], bool | None]) -> None:
        """Poll ``fd``. ``callback`` must not raise (it is a bug, logged, and ``fd`` dropped);
        it returns true if more is likely waiting (it read a full burst)."""
        self._epoll.register(fd, select.EPOLLIN)
        self._callbacks[fd] = callback

    def ready(self) -> bool:
        """Whether a polled descriptor is readable now (a system call; no callback runs)."""
        return not self._epoll.closed and bool(self._epoll.poll(0, 1))

    def remove(self, fd: int) -> None:
        """Stop polling ``fd`` (a no-op if it is not polled); call it before closing ``fd``."""
        if self._callbacks.pop(fd, None) is not None and not self._epoll.closed:
            self._epoll.unregister(fd)

    async def run(self) -> None:
        """Dispatch readiness until cancelled; closes the epoll set on the way out."""
        epoll = self._epoll
        callbacks = self._callbacks
        busy = False
        try:
            while True:
                if busy:  # a flood: more is likely waiting; let the others run, then look
                    await trio.lowlevel.checkpoint()
                else:  # wait for the set (in Trio's epoll) only when it went quiet
                    await trio.lowlevel.wait_readable(epoll.fileno())
                busy = False
                for fd, _events in epoll.poll(0, _MAX_EVENTS):
                    callback = callbacks.get(fd)
                    if callback is None:
                        continue  # removed by an earlier callback of this round
                    try:
                        busy = bool(callback()) or busy
                    except Exception:  # one session's bug must not stop every other one
                        log.exception("pty reactor: callback for fd %d failed; dropping it", fd)
                        self.remove(fd)
        finally:
            trio.lowlevel.notify_closing(epoll.fileno())
            epoll.close()
