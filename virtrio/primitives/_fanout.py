"""One publisher, many subscribers, each with its own bounded queue.

This is the single fan-out primitive of virtrio: VM state changes and protocol events go through
it, and so does terminal output in the session daemon (seed 003's flow control). Publishing never
blocks and never waits for a slow subscriber::

    fanout: Fanout[bytes] = Fanout(max_queue=16384, warn_remaining=4096)
    with fanout.subscribe() as sub:
        async for chunk in sub:              # ends when the fanout closes
            if (p := sub.take_pressure()) is not None:
                print("behind by", p.queue_size, p.level)
            ...
    fanout.publish(b"data")                  # from the producer, sync

When a subscriber's free room falls below ``warn_remaining`` it is marked *yellow*; when its queue
is full, the item cannot be queued: the subscriber is marked *red* and, with
``overflow="disconnect"``, closed with :class:`SubscriberOverflowError`; otherwise the item is
dropped for that subscriber alone and counted in :attr:`Pressure.dropped`, so the loss is never
silent. Pressure notices are kept beside the queue (they need no room in it) and taken with
:meth:`Subscription.take_pressure`: a yellow notice still pending when the subscriber turns red
is kept, so the owner learns of both, in order.

By default the queue counts items. With ``size=``, an item takes ``size(item)`` units of it
instead, so the bound can be in bytes or in fixed-size chunks whatever the size of the items
(``Fanout(max_queue=16384, size=lambda b: -(-len(b) // 8192))``: at most 16384 chunks of 8 KiB,
i.e. 128 MiB, held for a subscriber that never reads). ``max_queue``, ``warn_remaining``,
:attr:`Subscription.queue_size` and the counts in a :class:`Pressure` are all in those units.
"""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Generic, Literal, TypeVar

import attrs
import trio

from virtrio.errors import ConfigError, VirtrioError

from ._errors import fresh_error

__all__ = ["Fanout", "Pressure", "PressureLevel", "SubscriberOverflowError", "Subscription"]

T = TypeVar("T")


class PressureLevel(enum.Enum):
    """How far behind a subscriber is."""

    YELLOW = "yellow"  #: free room fell below the warning threshold
    RED = "red"  #: the queue was full and an item could not be queued


class SubscriberOverflowError(VirtrioError):
    """The subscriber's queue overflowed and the fanout's policy is to disconnect it."""


@attrs.frozen
class Pressure:
    """A backpressure notice for one subscriber."""

    level: PressureLevel
    #: Queue units in use (items, unless the fanout has a ``size``) when the notice was raised.
    queue_size: int
    #: Units dropped for this subscriber since its last red notice was taken.
    dropped: int = 0


class Subscription(Generic[T]):
    """One subscriber's end of a :class:`Fanout`: an async iterator of the published items.

    Use it as a context manager (``with fanout.subscribe() as sub``) so it unsubscribes on exit.
    """

    def __init__(
        self,
        fanout: Fanout[T],
        max_queue: int,
        accept: Callable[[T], bool] | None,
        on_overflow: Callable[[], None] | None = None,
        on_pressure: Callable[[PressureLevel, bool, int], None] | None = None,
        deliver: Callable[[T], T | None] | None = None,
    ) -> None:
        self._fanout = fanout
        self._deliver = deliver
        self._accept = accept
        self._on_overflow = on_overflow
        self._on_pressure = on_pressure
        # the bound is kept here, in units of the fanout's size function: not by the channel
        self._send, self._receive = trio.open_memory_channel[T](math.inf)
        self._size = fanout._size
        self._max_queue = max_queue
        self._used = 0
        self._yellow: Pressure | None = None
        self._red: Pressure | None = None
        self._overflowed = False
        self._closed = False

    @property
    def queue_size(self) -> int:
        """Queue units (items, unless the fanout has a ``size``) published, not yet received."""
        return self._used

    def take_pressure(self) -> Pressure | None:
        """Return and clear the oldest pending pressure notice, if any (a yellow one before a
        red one; call again for the next)."""
        if (notice := self._yellow) is not None:
            self._yellow = None
        else:
            notice, self._red = self._red, None
        return notice

    def _took(self, item: T) -> T:
        if not self._closed:  # close() may run while receive() hands over its item
            self._used -= 1 if self._size is None else self._size(item)
        return item

    async def receive(self) -> T:
        """The next item.

        Raises:
            trio.EndOfChannel: the fanout was closed and every item was received.
            SubscriberOverflowError: this subscriber fell behind under the disconnect policy.
            Exception: the error the fanout was closed with (e.g. a lost connection), once
                every item queued before it was received: a fresh instance of it per raise,
                so one subscriber's traceback never chains into another's.
        """
        try:
            return self._took(await self._receive.receive())
        except trio.EndOfChannel:
            end = self._end()
            raise end from end.__cause__  # keep the close error's own cause
        except trio.ClosedResourceError:
            raise trio.EndOfChannel from None

    def _end(self) -> BaseException:
        """What a receive raises once the queue is drained and closed."""
        if self._overflowed:
            units = "items" if self._size is None else "units"
            return SubscriberOverflowError(
                f"subscriber disconnected: its queue of {self._max_queue} {units} overflowed"
            )
        if self._fanout._close_error is not None:
            return fresh_error(self._fanout._close_error)
        return trio.EndOfChannel()

    def receive_nowait(self) -> T:
        """The next item if one is queued.

        Raises:
            trio.WouldBlock: nothing is queued.
            trio.EndOfChannel, SubscriberOverflowError, Exception: as :meth:`receive` (a
                subscription closed meanwhile ends, as in :meth:`receive`).
        """
        try:
            return self._took(self._receive.receive_nowait())
        except trio.EndOfChannel:
            end = self._end()
            raise end from end.__cause__  # keep the close error's own cause
        except trio.ClosedResourceError:
            raise trio.EndOfChannel from None

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.receive()
            except trio.EndOfChannel:
                return

    def close(self) -> None:
        """Unsubscribe; items still queued are discarded (and their memory freed at once)."""
        if not self._closed:
            self._closed = True
            self._fanout._subscribers.discard(self)
            self._send.close()
            self._receive.close()  # the last receiver: the channel drops its buffer
            self._used = 0

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # called by Fanout.publish
    def _offer(self, item: T, warn_remaining: int, overflow: str) -> None:
        if self._accept is not None and not self._accept(item):
            return
        if self._deliver is not None and not self._used:
            rest = self._deliver(item)  # nothing queued: the subscriber may take it at once
            if rest is None:
                return
            item = rest
        cost = 1 if self._size is None else self._size(item)
        # an empty queue takes any item, however large: a subscriber that keeps up always
        # makes progress
        if self._used and self._used + cost > self._max_queue:
            raised = self._red is None
            dropped = (self._red.dropped if self._red else 0) + cost
            self._fanout.dropped += cost
            self._red = Pressure(PressureLevel.RED, self._used, dropped)
            if overflow == "disconnect":
                self._overflowed = True
                self._fanout._subscribers.discard(self)
                self._send.close()
                if self._on_overflow is not None:
                    self._on_overflow()
            elif self._on_pressure is not None:
                self._on_pressure(PressureLevel.RED, raised, cost)
            return
        try:
            self._send.send_nowait(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):  # closed, not unsubscribed
            self.close()
            return
        self._used += cost
        if self._max_queue - self._used < warn_remaining and self._red is None:
            # one yellow notice per episode, updated until taken; none once red is pending
            raised = self._yellow is None
            self._yellow = Pressure(PressureLevel.YELLOW, self._used)
            if raised and self._on_pressure is not None:
                self._on_pressure(PressureLevel.YELLOW, True, 0)


class Fanout(Generic[T]):
    """Publishes each item to every current subscriber without ever blocking the publisher.

    Args:
        max_queue: default queue capacity per subscriber (seed default 16384), in items, or in
            the units of ``size``.
        warn_remaining: a yellow notice is raised when a subscriber's free room drops below this
            (default: a quarter of ``max_queue``, the seed's 4096 of 16384; 0 disables yellow
            notices).
        overflow: ``"drop"`` drops items for a full subscriber (counted in its red notice);
            ``"disconnect"`` ends that subscriber with :class:`SubscriberOverflowError`.
        size: how many queue units an item takes (e.g. ``len`` for a bound in bytes); the same
            answer for an item every time. Default: one per item.
    """

    def __init__(
        self,
        *,
        max_queue: int = 16384,
        warn_remaining: int | None = None,
        overflow: Literal["drop", "disconnect"] = "drop",
        size: Callable[[T], int] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ConfigError(f"Fanout max_queue must be >= 1, got {max_queue}")
        if warn_remaining is None:
            warn_remaining = max_queue // 4
        if not 0 <= warn_remaining <= max_queue:
            raise ConfigError(f"Fanout warn_remaining must be in [0, {max_queue}]")
        if overflow not in ("drop", "disconnect"):
            raise ConfigError(f"Fanout overflow must be 'drop' or 'disconnect', not {overflow!r}")
        self.max_queue = max_queue
        self.warn_remaining = warn_remaining
        self.overflow = overflow
        self._size = size
        self._subscribers: set[Subscription[T]] = set()
        #: Units dropped for full subscribers so far, over all subscribers.
        self.dropped = 0
        self._closed = False
        self._close_error: BaseException | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def subscribe(
        self,
        *,
        max_queue: int | None = None,
        accept: Callable[[T], bool] | None = None,
        on_overflow: Callable[[], None] | None = None,
        on_pressure: Callable[[PressureLevel, bool, int], None] | None = None,
        deliver: Callable[[T], T | None] | None = None,
    ) -> Subscription[T]:
        """A new subscription that sees every item published from now on.

        Args:
            max_queue: this subscription's capacity (default: the fanout's ``max_queue``).
            accept: if given, only items for which it returns true are queued (a filter that
                costs the subscriber no queue room).
            on_overflow: called once, synchronously from :meth:`publish`, when the
                ``"disconnect"`` policy ends this subscriber — so its owner can act at once
                (close a connection) instead of after draining the queue.
            on_pressure: called synchronously from :meth:`publish` as the queue fills, before
                the subscriber reads again (one that never reads is still counted):
                ``(level, raised, dropped)``, ``raised`` true when the notice is new (a yellow
                one, or the first drop since the last red notice was taken), ``dropped`` the
                units just dropped (0 for yellow). Not called for ``"disconnect"`` (see
                ``on_overflow``).
            deliver: called synchronously from :meth:`publish` with an item when nothing is
                queued for this subscriber, so it can hand the item on at once (write it to
                a socket) instead of waking its reader: it returns None when it took all of
                it, else what is left to queue (the item, or the part it could not take).
        """
        size = self.max_queue if max_queue is None else max_queue
        if size < 1:
            raise ConfigError(f"subscription max_queue must be >= 1, got {size}")
        sub = Subscription(self, size, accept, on_overflow, on_pressure, deliver)
        if self._closed:
            sub._send.close()
        else:
            self._subscribers.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def publish(self, item: T) -> None:
        """Queue ``item`` for every subscriber; never blocks.

        After :meth:`close` this does nothing: producers (a reader task, a libvirt callback)
        often outlive their listeners by a moment, and there is no one left to tell.
        """
        if self._closed:
            return
        for sub in list(self._subscribers):
            sub._offer(item, self.warn_remaining, self.overflow)

    def close(self, error: BaseException | None = None) -> None:
        """End every subscription once it has received what was already queued.

        With ``error``, each subscriber's next receive after the queued items raises it (each
        its own copy, see :func:`~virtrio.primitives.fresh_error`) instead of ending quietly
        (how a lost connection reaches every event listener).
        """
        if self._closed:
            return
        self._closed = True
        self._close_error = error
        for sub in list(self._subscribers):
            sub._send.close()
        self._subscribers.clear()
