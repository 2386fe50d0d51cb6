"""Serve connections: :func:`serve_streams` for an address, :class:`StreamServer` for any
listeners (a socket, or a yamux session's inbound streams).

::

    async def echo(stream: trio.abc.Stream) -> None:
        async for data in stream:
            await stream.send_all(data)

    addresses = await nursery.start(serve_streams, "tcp://127.0.0.1:0", echo, max_connections=8)

What every server of virtrio gets from it:

- Each connection runs ``handler(stream)`` in its own task of a handler nursery; the stream is
  closed when the handler returns. A handler that fails is logged (with its traceback when it
  is not a connection-level error) and counted, and its connection closed: it never takes
  another connection or the server with it.
- At most ``max_connections`` handlers run at once. A client beyond that is accepted and
  refused at once: ``refuse(stream, reason)`` tells it why where its protocol can (the PTY
  daemon sends an error frame), then it is closed and counted. Nobody waits unseen in the
  listen backlog.
- ``accept`` failing for lack of resources (EMFILE, ENFILE, ENOMEM, ENOBUFS) is logged and
  retried after a pause, as trio's ``serve_listeners`` does: the server keeps serving the
  connections it has and accepts again once descriptors are free.
- Graceful shutdown: when the server is cancelled it stops accepting at once (its listeners
  are closed), gives running handlers ``grace`` seconds to finish, then cancels them (the
  handler nursery's deadline becomes now + grace, as hypercorn does).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

import attrs
import trio

from virtrio.errors import ConfigError, VirtrioError

from ._addresses import Address, open_listeners, parse_address

__all__ = ["ServerStatistics", "StreamServer", "bound_address", "serve_streams"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=trio.abc.AsyncResource)

#: What ``accept`` fails with when the system is out of something: wait, then try again.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: Seconds between accept attempts while one of those lasts.
ACCEPT_RETRY_DELAY = 0.1
#: Seconds a refusal may take to reach the client (it runs in the accept loop).
REFUSE_TIMEOUT = 1.0

#: Errors that end one connection and are no bug of ours: logged briefly.
_CONNECTION_ERRORS = (VirtrioError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def bound_address(listener: trio.SocketListener) -> Address:
    """The address ``listener`` is bound to (with the port the kernel chose for port 0)."""
    sock = listener.socket
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return Address.unix(name if isinstance(name, str) else name.decode())
    if sock.family == getattr(socket, "AF_VSOCK", None):
        return Address.vsock(name[0], name[1])
    return Address.tcp(name[0], name[1])


@attrs.frozen
class ServerStatistics:
    """A snapshot of a :class:`StreamServer`'s counters."""

    active: int  #: handlers running now
    accepted: int  #: connections handed to a handler
    refused: int  #: connections refused because ``max_connections`` were running
    failed: int  #: handlers that ended with an error
    accept_errors: int  #: accepts that failed for lack of resources (and were retried)


class StreamServer(Generic[S]):
    """Runs ``handler(stream)`` for every stream its listeners accept (see the module).

    Args:
        handler: called once per connection, in its own task; the stream is closed after.
        max_connections: handlers running at once at most (``None``: no limit).
        refuse: ``await refuse(stream, reason)`` for a connection over the limit, to tell the
            client why (bounded by :data:`REFUSE_TIMEOUT`); the stream is closed after.
        grace: seconds running handlers may take to finish once the server is cancelled.
        name: for log messages.

    Raises:
        ConfigError: ``max_connections`` < 1 or ``grace`` < 0.
    """

    def __init__(
        self,
        handler: Callable[[S], Awaitable[object]],
        *,
        max_connections: int | None = None,
        refuse: Callable[[S, str], Awaitable[object]] | None = None,
        grace: float = 0.0,
        name: str = "server",
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {max_connections}")
        if not grace >= 0:
            raise ConfigError(f"grace must be a non-negative number of seconds, got {grace!r}")
        self._handler = handler
        self.max_connections = max_connections
        self._refuse = refuse
        self.grace = grace
        self.name = name
        self._active = 0
        self._accepted = 0
        self._refused = 0
        self._failed = 0
        self._accept_errors = 0

    def statistics(self) -> ServerStatistics:
        """The counters now."""
        return ServerStatistics(
            self._active, self._accepted, self._refused, self._failed, self._accept_errors
        )

    async def serve(
        self,
        address: str | Address,
        *,
        backlog: int | None = None,
        task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``address`` and serve until cancelled; ``task_status.started`` gets the
        bound addresses (port 0 resolved).

        Raises:
            ConfigError: a bad address.
            ConnectError: the address cannot be listened on.
        """
        listeners = await open_listeners(parse_address(address), backlog=backlog)
        bound = [bound_address(listener) for listener in listeners]
        # a socket server's streams are SocketStreams (serve_streams makes it so)
        sockets = cast("list[trio.abc.Listener[S]]", listeners)
        await self._serve(sockets, lambda: task_status.started(bound))

    async def serve_listeners(
        self,
        listeners: Sequence[trio.abc.Listener[S]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve what ``listeners`` accept (it closes them) until cancelled, or until every
        listener is closed (a yamux session that ended) and every handler has returned."""
        await self._serve(listeners, task_status.started)

    async def _serve(
        self, listeners: Sequence[trio.abc.Listener[S]], started: Callable[[], object]
    ) -> None:
        handler_scope = trio.CancelScope(shield=True)
        accepting_done = trio.Event()
        try:
            async with trio.open_nursery() as outer:
                handlers = await outer.start(self._run_handlers, handler_scope, accepting_done)
                try:
                    async with trio.open_nursery() as accepting:
                        for listener in listeners:
                            accepting.start_soon(self._accept_loop, listener, handlers)
                        started()
                except BaseException:
                    # cancelled (or an accept loop failed): stop accepting now, and give the
                    # running handlers their grace
                    handler_scope.deadline = trio.current_time() + self.grace
                    raise
                finally:
                    accepting_done.set()
                    with trio.CancelScope(shield=True):
                        for listener in listeners:
                            await trio.aclose_forcefully(listener)
        finally:
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await trio.aclose_forcefully(listener)

    async def _run_handlers(
        self,
        scope: trio.CancelScope,
        done: trio.Event,
        *,
        task_status: trio.TaskStatus[trio.Nursery],
    ) -> None:
        # shielded: cancelling the server stops the accept loops at once, while handlers
        # run on until the deadline set then (now + grace)
        with scope:
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                await done.wait()

    async def _accept_loop(self, listener: trio.abc.Listener[S], handlers: trio.Nursery) -> None:
        limit = math.inf if self.max_connections is None else self.max_connections
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return  # closed (a yamux session that ended, or by us at shutdown)
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                self._accept_errors += 1
                log.error(
                    "%s: accept failed with %s (%s); %d connections served on; retrying in %g s",
                    self.name,
                    errno.errorcode[exc.errno],
                    os.strerror(exc.errno),
                    self._active,
                    ACCEPT_RETRY_DELAY,
                )
                await trio.sleep(ACCEPT_RETRY_DELAY)
                continue
            if self._active >= limit:
                await self._refuse_one(stream)
                continue
            self._active += 1
            self._accepted += 1
            handlers.start_soon(self._handle, stream)

    async def _refuse_one(self, stream: S) -> None:
        self._refused += 1
        reason = f"{self.name} already serves its maximum of {self.max_connections} connections"
        log.warning("%s: refusing a connection: %s", self.name, reason)
        try:
            if self._refuse is not None:
                with trio.move_on_after(REFUSE_TIMEOUT):
                    await self._refuse(stream, reason)
        except _CONNECTION_ERRORS as exc:
            log.debug("%s: the refusal did not reach the client: %s", self.name, exc)
        finally:
            await trio.aclose_forcefully(stream)

    async def _handle(self, stream: S) -> None:
        try:
            await self._handler(stream)
        except _CONNECTION_ERRORS as exc:
            self._failed += 1
            log.info("%s: a connection ended with an error: %s", self.name, exc)
        except Exception:
            self._failed += 1
            log.exception("%s: a connection handler failed", self.name)
        finally:
            self._active -= 1
            await trio.aclose_forcefully(stream)


async def serve_streams(
    address: str | Address,
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    *,
    max_connections: int | None = None,
    refuse: Callable[[trio.SocketStream, str], Awaitable[object]] | None = None,
    grace: float = 0.0,
    backlog: int | None = None,
    name: str = "",
    task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``address`` and run ``handler(stream)`` for each connection until cancelled:
    a :class:`StreamServer` (see it for the options). ``task_status.started`` gets the bound
    addresses (port 0 resolved).

    Raises:
        ConfigError: bad address, ``max_connections`` < 1 or ``grace`` < 0.
        ConnectError: the address cannot be listened on.
    """
    server: StreamServer[trio.SocketStream] = StreamServer(
        handler,
        max_connections=max_connections,
        refuse=refuse,
        grace=grace,
        name=name or f"server on {address}",
    )
    await server.serve(address, backlog=backlog, task_status=task_status)
