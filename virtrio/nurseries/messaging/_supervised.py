"""A message connection that stays up (feature V6): reconnect with backoff, health checks.

``connect_supervised(client)`` runs the project's one reconnect loop
(:class:`~virtrio.primitives.Supervisor`) over :meth:`MessageClient.connect`. Each connection it
makes gets a task that moves every message received into one buffer shared by all the
connections, so :meth:`SupervisedConnection.receive` sees the messages of consecutive
connections in order, and a connection that ends leaves nothing it delivered behind.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from virtrio.channels.messaging import HealthCheck, MessageConnection
from virtrio.channels.messaging._endpoints import _deadline
from virtrio.errors import ConfigError, VirtrioError
from virtrio.primitives import (
    Backoff,
    SupervisedHandle,
    Supervisor,
    fresh_error,
    open_service_nursery,
)

if TYPE_CHECKING:
    from virtrio.channels.messaging import MessageClient

__all__ = ["SupervisedConnection", "connect_supervised"]

log = logging.getLogger(__name__)


class _Link:
    """One connection of a supervised connection, as the supervisor sees it."""

    def __init__(self, connection: MessageConnection) -> None:
        self.connection = connection
        self.closed_reason: BaseException | None = None
        self._closed = trio.Event()

    @property
    def is_connected(self) -> bool:
        return not self._closed.is_set() and self.connection.is_connected

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def fail(self, reason: BaseException) -> None:
        """Give the connection up (the supervisor closes it and reconnects)."""
        if not self._closed.is_set():
            self.closed_reason = reason
            self._closed.set()


class SupervisedConnection(SupervisedHandle[_Link]):
    """Messages to one server, across reconnects. Made by
    :func:`connect_supervised`::

        async with connect_supervised(client, health_check=HealthCheck(interval=5)) as link:
            await link.send(b"job", timeout=30)      # waits through an outage, up to 30 s
            reply = await link.receive(timeout=30)
            with link.state_changes() as changes: ...

    Delivery: what a connection receives is buffered (``receive_buffer`` messages; when the
    buffer is full, the transport's flow control holds the server back) and is all handed to
    :meth:`receive`, also after that connection ended. A send that fails because its
    connection failed raises :class:`~virtrio.errors.ConnectionLostError`: the message may or
    may not have arrived (only xtransport's ack mode confirms delivery); the connection is then
    replaced, and the next send goes to the new one. Nothing is resent on its own.

    A :class:`~virtrio.primitives.SupervisedHandle`: :attr:`state`, :meth:`state_changes`,
    :attr:`is_connected`, and a send to a channel that FAILED permanently raises that error at
    once.
    """

    def __init__(
        self,
        supervisor: Supervisor[_Link],
        messages: trio.MemoryReceiveChannel[bytes],
        room: trio.Semaphore,
        call_timeout: float,
    ) -> None:
        super().__init__(supervisor, call_timeout)
        self._messages = messages
        self._room = room

    @property
    def connection(self) -> MessageConnection | None:
        """The connection in use now, or None while reconnecting."""
        link = self.supervisor.client
        return link.connection if link is not None else None

    async def send(self, message: bytes, *, timeout: float | None = None) -> None:
        """Send one message on the current connection, waiting for one through an outage.

        Raises:
            ChannelUnavailableError: no connection within ``timeout`` (carries the last
                connection error).
            ConnectionLostError: the connection failed during the send (it is replaced).
            VirtrioTimeoutError: the send itself did not finish within ``timeout``.
        """
        link, deadline = await self._connected(timeout)
        remaining = deadline.remaining()
        try:
            await link.connection.send(
                message, timeout=None if math.isinf(remaining) else max(remaining, 1e-9)
            )
        except (VirtrioError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if not link.connection.is_connected:  # part of a message may be on the wire
                link.fail(exc)
            raise

    async def receive(self, *, timeout: float | None = None) -> bytes:
        """The next message, from whichever connection it came on.

        Raises:
            VirtrioTimeoutError: nothing within ``timeout``.
            Exception: the permanent error the connection FAILED with, at once, once every
                message received before is taken.
        """
        failed = self.supervisor.failed
        if failed is not None:
            try:
                message = self._messages.receive_nowait()
            except trio.WouldBlock:
                raise fresh_error(failed) from None
            self._room.release()
            return message
        limit = self._limit(timeout)
        with _deadline(None if math.isinf(limit) else limit, "waiting for a message", self._peer):
            message = await self._messages.receive()
        self._room.release()
        return message

    def __aiter__(self) -> SupervisedConnection:
        return self

    async def __anext__(self) -> bytes:
        """Messages never end: iterating waits for the next one, however long."""
        return await self.receive(timeout=math.inf)

    @property
    def _peer(self) -> str:
        return self.supervisor.name


async def _pump(link: _Link, messages: trio.MemorySendChannel[bytes], room: trio.Semaphore) -> None:
    """Move what the connection receives into the shared buffer until it ends. Room is taken
    before receiving, so a message once received is never dropped by a cancellation."""
    connection = link.connection
    try:
        while True:
            await room.acquire()
            try:
                message = await connection.receive(timeout=math.inf)
            except BaseException:
                room.release()
                raise
            messages.send_nowait(message)
    except (VirtrioError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        link.fail(exc)


async def _watch(link: _Link, health_check: HealthCheck) -> None:
    failure = await health_check.watch(link.connection)
    log.info("%s: %s; reconnecting", link.connection.peer, failure)
    link.fail(failure)


@asynccontextmanager
async def _open_link(
    client: MessageClient,
    messages: trio.MemorySendChannel[bytes],
    room: trio.Semaphore,
    health_check: HealthCheck | None,
) -> AsyncIterator[_Link]:
    async with client.connect() as connection, trio.open_nursery() as nursery:
        link = _Link(connection)
        nursery.start_soon(_pump, link, messages, room)
        if health_check is not None:
            nursery.start_soon(_watch, link, health_check)
        try:
            yield link
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def connect_supervised(
    client: MessageClient,
    *,
    backoff: Backoff | None = None,
    health_check: HealthCheck | None = None,
    receive_buffer: int = 64,
    call_timeout: float = math.inf,
) -> AsyncIterator[SupervisedConnection]:
    """Keep ``client`` connected until the block ends (see :class:`SupervisedConnection`).

    Args:
        backoff: delays between attempts (default: 1 s doubling to 60 s, with jitter).
        health_check: probe each connection; one that fails is replaced.
        receive_buffer: messages received but not yet taken by :meth:`~SupervisedConnection.
            receive`, at most.
        call_timeout: default deadline of sends and receives (seconds).
    """
    if receive_buffer < 1:
        raise ConfigError(f"receive_buffer must be at least 1, got {receive_buffer!r}")
    if not call_timeout > 0:
        raise ConfigError(f"call_timeout must be > 0 seconds, got {call_timeout!r}")
    room = trio.Semaphore(receive_buffer)
    send, receive = trio.open_memory_channel[bytes](math.inf)
    supervisor: Supervisor[_Link] = Supervisor(
        str(client.config.address),
        lambda: _open_link(client, send, room, health_check),
        backoff=backoff,
    )
    async with open_service_nursery() as nursery:
        await nursery.start(supervisor.run)
        try:
            yield SupervisedConnection(supervisor, receive, room, call_timeout)
        finally:
            nursery.cancel_scope.cancel()
