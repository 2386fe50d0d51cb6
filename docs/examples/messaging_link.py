"""Virga-style messages with every extension point: a compressed, encrypted yamux link that
reconnects by itself, and a pool of connections for many tasks.

A server restarts halfway through; the supervised client's sends wait for it and go on. Runs on
its own over loopback (or give a ``unix:/path`` or ``vsock://cid:port`` to listen on)::

    python docs/examples/messaging_link.py [ADDRESS]
"""

from __future__ import annotations

import os
import sys

import trio

from virtrio.channels import Address
from virtrio.channels.messaging import (
    ClientConfig,
    Compression,
    Encryption,
    HealthCheck,
    MessageClient,
    MessageConnection,
    MessageServer,
    ServerConfig,
)
from virtrio.nurseries import Backoff
from virtrio.nurseries.messaging import connect_supervised, open_pool

KEY = os.urandom(32)  # both ends hold the same 32 bytes (read it from a secret store)
LAYERS = [Compression(), Encryption(KEY)]


async def shout(connection: MessageConnection) -> None:
    """The service: every message comes back in capitals."""
    async for message in connection:
        await connection.send(message.upper())


async def serve(
    listen: str, scope: trio.CancelScope, *, task_status: trio.TaskStatus[list[Address]]
) -> None:
    """Serve until ``scope`` is cancelled; reports the bound addresses."""
    with scope:
        server = MessageServer.with_yamux(ServerConfig(listen), middleware=LAYERS)
        await server.serve(shout, task_status=task_status)


async def main(listen: str = "tcp://127.0.0.1:0") -> list[bytes]:
    """Talk through a server restart, then through a pool; returns the replies."""
    replies: list[bytes] = []
    async with trio.open_nursery() as nursery:
        first = trio.CancelScope()
        [address] = await nursery.start(serve, listen, first)
        client = MessageClient.with_yamux(ClientConfig(address), middleware=LAYERS)
        async with connect_supervised(
            client,
            backoff=Backoff(initial=0.1, maximum=1),
            health_check=HealthCheck(interval=1, timeout=1),
        ) as link:
            await link.send(b"hello", timeout=10)
            replies.append(await link.receive(timeout=10))
            first.cancel()  # the server goes away ...
            await trio.sleep(0.2)
            await nursery.start(serve, str(address), trio.CancelScope())  # ... and comes back
            await link.send(b"still there?", timeout=10)  # waited for the reconnect
            replies.append(await link.receive(timeout=10))

        async with open_pool(client, max_size=4) as pool:

            async def ask(text: bytes) -> None:
                async with pool.connection() as connection:
                    await connection.send(text)
                    replies.append(await connection.receive(timeout=10))

            async with trio.open_nursery() as askers:
                for text in (b"one", b"two", b"three", b"four", b"five", b"six"):
                    askers.start_soon(ask, text)
            print(f"pool: {pool.size} connections served 6 requests")
        nursery.cancel_scope.cancel()
    return replies


if __name__ == "__main__":
    for reply in trio.run(main, *sys.argv[1:]):
        print(reply.decode())
