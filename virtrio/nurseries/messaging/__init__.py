"""Message connections kept alive (feature V6): one that reconnects with backoff and health
checks, and a pool of them for many borrowers. Both are functions over a
:class:`~virtrio.channels.messaging.MessageClient`, whose own connections are one-shot::

    client = MessageClient.with_yamux(ClientConfig("tcp://127.0.0.1:1234"))
    async with connect_supervised(client, health_check=HealthCheck(interval=5)) as link:
        await link.send(b"job", timeout=30)      # waits through an outage, up to 30 s

    async with open_pool(client, max_size=8) as pool:
        async with pool.connection() as connection:
            await connection.send(b"request")
"""

from ._pool import MessagePool as MessagePool, open_pool as open_pool
from ._supervised import (
    SupervisedConnection as SupervisedConnection,
    connect_supervised as connect_supervised,
)

__all__ = ["MessagePool", "SupervisedConnection", "connect_supervised", "open_pool"]
