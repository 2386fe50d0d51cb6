"""The emulation-session server (seed 002, features S1-S3, S6, S8-S10): a REST and WebSocket
API over :mod:`virtrio.engine.backends`, with API keys and roles, an audit log, Prometheus
metrics, and a store on SQLite (the default) or PostgreSQL.

::

    async with trio.open_nursery() as nursery:
        url, state = await nursery.start(partial(serve, data_dir, listen="tcp://127.0.0.1:8080"))

See docs/server.md; ``virtrio serve`` runs it.
"""

from ._app import (
    ROUTES as ROUTES,
    ServerState as ServerState,
    build_app as build_app,
    open_server as open_server,
    serve as serve,
)
from ._auth import Principal as Principal, Role as Role
from ._resources import ResourceCaps as ResourceCaps
from ._store import MIGRATIONS as MIGRATIONS, Store as Store, open_store as open_store

__all__ = [
    "MIGRATIONS",
    "ROUTES",
    "Principal",
    "ResourceCaps",
    "Role",
    "ServerState",
    "Store",
    "build_app",
    "open_server",
    "open_store",
    "serve",
]
