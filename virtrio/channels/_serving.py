"""Serve connections on an address with a connection limit: :func:`serve_streams`.

::

    async def echo(stream: trio.SocketStream) -> None:
        async for data in stream:
            await stream.send_all(data)

    addresses = await nursery.start(serve_streams, "tcp://127.0.0.1:0", echo, max_connections=8)

At most ``max_connections`` handlers run at once; further clients wait in the listen backlog
(their connect succeeds, nothing is read) until a handler returns, so a burst is served in turn
rather than refused. A handler that fails with a connection-level error (a lost peer, a peer
that broke the protocol) is logged and its connection closed; the server carries on.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Awaitable, Callable

import trio

from virtrio.errors import ConfigError, VirtrioError

from ._addresses import Address, open_listeners, parse_address

__all__ = ["bound_address", "serve_streams"]

log = logging.getLogger(__name__)

StreamHandler = Callable[[trio.SocketStream], Awaitable[object]]


def bound_address(listener: trio.SocketListener) -> Address:
    """The address ``listener`` is bound to (with the port the kernel chose for port 0)."""
    sock = listener.socket
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return Address.unix(name if isinstance(name, str) else name.decode())
    if sock.family == getattr(socket, "AF_VSOCK", None):
        return Address.vsock(name[0], name[1])
    return Address.tcp(name[0], name[1])


async def serve_streams(
    address: str | Address,
    handler: StreamHandler,
    *,
    max_connections: int | None = None,
    backlog: int | None = None,
    task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``address`` and run ``handler(stream)`` for each connection, forever.

    ``task_status.started`` gets the bound addresses (port 0 resolved). The stream is closed
    when its handler returns.

    Raises:
        ConfigError: bad address or ``max_connections`` < 1.
        ConnectError: the address cannot be listened on.
    """
    if max_connections is not None and max_connections < 1:
        raise ConfigError(f"max_connections must be at least 1, got {max_connections}")
    addr = parse_address(address)
    listeners = await open_listeners(addr, backlog=backlog)
    limiter = trio.CapacityLimiter(max_connections or math.inf)
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(_accept_loop, listener, handler, limiter, nursery)
            task_status.started([bound_address(listener) for listener in listeners])
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners:
                await listener.aclose()


async def _accept_loop(
    listener: trio.SocketListener,
    handler: StreamHandler,
    limiter: trio.CapacityLimiter,
    nursery: trio.Nursery,
) -> None:
    while True:
        slot = object()
        await limiter.acquire_on_behalf_of(slot)
        try:
            stream = await listener.accept()
        except BaseException:
            limiter.release_on_behalf_of(slot)
            raise
        nursery.start_soon(_handle, stream, handler, limiter, slot)


async def _handle(
    stream: trio.SocketStream, handler: StreamHandler, limiter: trio.CapacityLimiter, slot: object
) -> None:
    try:
        async with stream:
            await handler(stream)
    except (VirtrioError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        log.info("connection ended with an error: %s", exc)
    finally:
        limiter.release_on_behalf_of(slot)
