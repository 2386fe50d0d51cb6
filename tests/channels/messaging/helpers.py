"""What the messaging tests share: the transports under test, an echo handler, a running server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.channels import Address
from virtrio.channels.messaging import MessageConnection, MessageServer, with_xtransport, with_yamux
from virtrio.channels.xtransfer import XtransferConfig

TRANSPORTS = {
    "xtransport": with_xtransport(),
    "xtransport-virga-ack": with_xtransport(XtransferConfig(max_frame_size=1024, ack=True)),
    "yamux": with_yamux(),
}


async def echo(connection: MessageConnection) -> None:
    """Send every message back until the client disconnects."""
    async for message in connection:
        await connection.send(message)


@asynccontextmanager
async def running(server: MessageServer, handler: object = echo) -> AsyncIterator[Address]:
    """``server`` serving ``handler`` for the block; yields its bound address."""
    async with trio.open_nursery() as nursery:
        [address] = await nursery.start(server.serve, handler)
        yield address
        nursery.cancel_scope.cancel()
