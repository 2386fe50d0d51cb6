"""A pool of message connections to one server (feature V6): idle connections are kept for
the next borrower, checked while they wait, and closed once idle too long.

Each connection lives in a task of the pool's nursery, which holds its
:meth:`MessageClient.connect` block open until the pool lets it go, so every connection has
an owner and leaving the pool's block closes them all.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from virtrio.channels.messaging import HealthCheck, HealthCheckError, MessageConnection
from virtrio.errors import ConfigError, VirtrioTimeoutError
from virtrio.primitives import Deadline, open_service_nursery

if TYPE_CHECKING:
    from virtrio.channels.messaging import MessageClient

__all__ = ["MessagePool", "open_pool"]

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class _Pooled:
    """One pooled connection and the event that lets its task close it."""

    connection: MessageConnection
    release: trio.Event = attrs.field(factory=trio.Event)
    idle_since: float = 0.0
    checked_at: float = 0.0


class MessagePool:
    """Up to ``max_size`` connections to one server, reused. Made by
    :func:`open_pool`::

        async with open_pool(client, max_size=4, health_check=HealthCheck(interval=30)) as pool:
            async with pool.connection() as connection:    # an idle one, or a new one
                await connection.send(b"request")
                reply = await connection.receive()

    A borrower that leaves its block normally gives the connection back for the next one; one
    that leaves with an exception, or whose connection went down, has it closed (its state is
    unknown: a reply may still be on its way). Idle connections are closed after
    ``idle_timeout`` seconds and, with a health check, probed every ``interval`` seconds;
    a probe may exchange messages, since nobody else uses an idle connection.
    """

    def __init__(
        self,
        client: MessageClient,
        nursery: trio.Nursery,
        *,
        max_size: int,
        idle_timeout: float,
        health_check: HealthCheck | None,
    ) -> None:
        self.client = client
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.health_check = health_check
        self._nursery = nursery
        self._slots = trio.Semaphore(max_size)
        self._idle: list[_Pooled] = []  # the most recently returned last
        self._idle_changed = trio.Event()
        self._live: set[_Pooled] = set()
        self._closed = False

    @property
    def size(self) -> int:
        """Connections open now, borrowed or idle."""
        return len(self._live)

    @property
    def idle(self) -> int:
        """Connections waiting for a borrower."""
        return len(self._idle)

    async def wait_changed(self) -> None:
        """Return the next time a connection opens or closes, or is borrowed or given back:
        to wait for the pool to settle without polling (``while pool.size: await
        pool.wait_changed()``, under a deadline of the caller's)."""
        await self._idle_changed.wait()

    @asynccontextmanager
    async def connection(self, *, timeout: float | None = None) -> AsyncIterator[MessageConnection]:
        """Borrow a connection for the block: an idle one if any is up, else a new one.

        Raises:
            VirtrioTimeoutError: ``max_size`` connections stayed borrowed, or connecting did not
                finish, within ``timeout`` (default: the client's ``connect_timeout``).
            ConnectError: the server could not be reached.
            trio.ClosedResourceError: the pool's block has ended.
        """
        limit = self.client.config.connect_timeout if timeout is None else timeout
        deadline = Deadline.after(limit)  # for the wait and the connect together
        self._check_open()
        with trio.move_on_at(deadline.at) as waiting:
            await self._slots.acquire()
        if waiting.cancelled_caught:
            raise VirtrioTimeoutError(
                f"pool of {self.client.config.address}: all {self.max_size} connections stayed"
                f" in use for {limit:g} s"
            )
        try:
            pooled = self._take_idle() or await self._connect(deadline, limit)
            returned = False
            try:
                yield pooled.connection
                returned = True
            finally:
                if returned and pooled.connection.is_connected and not self._closed:
                    self._give_back(pooled)
                else:
                    self._release(pooled)
        finally:
            self._slots.release()

    def _release(self, pooled: _Pooled) -> None:
        """Let the connection's task close it."""
        self._live.discard(pooled)
        pooled.release.set()
        self._changed()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"the pool of {self.client.config.address} is closed")

    def _take_idle(self) -> _Pooled | None:
        while self._idle:
            pooled = self._idle.pop()
            if pooled.connection.is_connected:
                self._changed()
                return pooled
            self._release(pooled)
        return None

    def _give_back(self, pooled: _Pooled) -> None:
        pooled.idle_since = pooled.checked_at = trio.current_time()
        self._idle.append(pooled)
        self._changed()

    def _changed(self) -> None:
        self._idle_changed.set()
        self._idle_changed = trio.Event()

    async def _connect(self, deadline: Deadline, limit: float) -> _Pooled:
        with trio.move_on_at(deadline.at) as connecting:
            pooled: _Pooled = await self._nursery.start(self._hold)
            return pooled
        assert connecting.cancelled_caught
        raise VirtrioTimeoutError(
            f"pool of {self.client.config.address}: no connection within {limit:g} s"
        )

    async def _hold(self, *, task_status: trio.TaskStatus[_Pooled]) -> None:
        """Own one connection until the pool releases it."""
        started = False
        try:
            async with self.client.connect() as connection:
                pooled = _Pooled(connection)
                self._live.add(pooled)
                self._changed()
                try:
                    task_status.started(pooled)
                    started = True
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._forget_when_closed, pooled, nursery.cancel_scope)
                        await pooled.release.wait()
                        nursery.cancel_scope.cancel()
                finally:
                    self._live.discard(pooled)
                    self._changed()
        except Exception as exc:
            if not started:
                raise  # to the borrower that asked for it
            log.debug("pooled connection to %s ended: %s", self.client.config.address, exc)

    async def _forget_when_closed(self, pooled: _Pooled, scope: trio.CancelScope) -> None:
        """An idle connection that ends by itself (the server hung up) leaves the pool at once;
        a borrowed one is left to its borrower, who may still read what arrived before."""
        await pooled.connection.wait_closed()
        if pooled in self._idle:
            self._idle.remove(pooled)
            self._changed()
            self._release(pooled)
            scope.cancel()

    async def _tend(self) -> None:
        """Close idle connections that idled too long or failed their health check."""
        while True:
            now = trio.current_time()
            due = math.inf
            for pooled in list(self._idle):
                expires = pooled.idle_since + self.idle_timeout
                if now >= expires or not pooled.connection.is_connected:
                    self._idle.remove(pooled)
                    self._release(pooled)
                    continue
                due = min(due, expires)
                if self.health_check is not None:
                    check_at = pooled.checked_at + self.health_check.interval
                    if now >= check_at:
                        self._nursery.start_soon(self._check, pooled)
                        pooled.checked_at = math.inf  # until the check is over
                    else:
                        due = min(due, check_at)
            changed = self._idle_changed
            with trio.move_on_at(due):
                await changed.wait()

    async def _check(self, pooled: _Pooled) -> None:
        assert self.health_check is not None
        if pooled not in self._idle:
            return
        self._idle.remove(pooled)  # no borrower may take it while it is probed
        try:
            await self.health_check.check(pooled.connection)
        except HealthCheckError as exc:
            log.info("pool of %s: %s; dropped", self.client.config.address, exc)
            self._release(pooled)
            return
        if self._closed:
            self._release(pooled)
            return
        pooled.checked_at = trio.current_time()
        self._idle.append(pooled)
        self._changed()


@asynccontextmanager
async def open_pool(
    client: MessageClient,
    *,
    max_size: int = 8,
    idle_timeout: float = 60.0,
    health_check: HealthCheck | None = None,
) -> AsyncIterator[MessagePool]:
    """A :class:`MessagePool` of ``client``'s connections for the block; leaving it closes
    them all."""
    if max_size < 1:
        raise ConfigError(f"max_size must be at least 1, got {max_size!r}")
    if not idle_timeout > 0:
        raise ConfigError(f"idle_timeout must be > 0 seconds, got {idle_timeout!r}")
    async with open_service_nursery() as nursery:
        pool = MessagePool(
            client, nursery, max_size=max_size, idle_timeout=idle_timeout, health_check=health_check
        )
        nursery.start_soon(pool._tend)
        try:
            yield pool
        finally:
            pool._closed = True
            nursery.cancel_scope.cancel()
