"""The ASGI app and the server around it: hypercorn's Trio worker in a nursery that also owns
every session's backend instance (:func:`open_server`, :func:`serve`)."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import attrs
import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from virtrio.engine.backends import (
    CONSOLE_HISTORY,
    Backend,
    load_backend,
    remove_stale_cgroups,
)
from virtrio.primitives import open_service_nursery

from ._artefacts import ArtefactStore
from ._auth import Authenticator, RateLimiter
from ._http import JSONResponse, RouteSpec, error_response, wrap
from ._metrics import Metrics
from ._openapi import DOCS_PAGE, openapi_document
from ._resources import ResourceCaps
from ._router import IndexedRouter
from ._routes_debug import DEBUG_ROUTES
from ._routes_misc import MISC_ROUTES
from ._routes_sessions import SESSION_ROUTES
from ._sessions import SessionManager
from ._store import Store, open_store
from ._ws import console_socket, events_socket

__all__ = ["ROUTES", "ServerState", "build_app", "hypercorn_config", "open_server", "serve"]

#: the browser console's page, served at /console/
STATIC = Path(__file__).parent / "static"

#: every HTTP route the server has (the WebSockets are beside them)
ROUTES: tuple[RouteSpec, ...] = SESSION_ROUTES + DEBUG_ROUTES + MISC_ROUTES


@attrs.define(eq=False)
class ServerState:
    """What every request reaches: the store, sessions, auth, artefacts and metrics."""

    store: Store
    manager: SessionManager
    auth: Authenticator
    limiter: RateLimiter
    artefacts: ArtefactStore
    metrics: Metrics
    server_id: str
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("virtrio.server"))
    url: str = ""


def build_app(state: ServerState) -> Starlette:
    """The Starlette app serving ``state``."""
    routes: list[BaseRoute] = [
        Route(spec.path, wrap(spec, state), methods=[spec.method], name=spec.handler.__name__)
        for spec in ROUTES
    ]
    document = openapi_document(ROUTES)

    async def openapi(_: Request) -> Response:
        return JSONResponse(document)

    async def docs(_: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    routes += [
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/docs", docs, methods=["GET"]),
        WebSocketRoute("/api/v1/sessions/{id}/console", console_socket),
        WebSocketRoute("/api/v1/sessions/{id}/events", events_socket),
        # the browser console: static/ (xterm.js vendored into static/vendor by setup.sh)
        Mount("/console", StaticFiles(directory=STATIC, html=True), name="console"),
    ]

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail)
        )

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.router = IndexedRouter(routes)  # tries only the routes a path's length allows
    app.state.virtrio = state
    return app


@asynccontextmanager
async def open_server(
    data_dir: Path,
    *,
    db: str | None = None,
    server_id: str | None = None,
    rate: float = 50.0,
    burst: int = 100,
    token_ttl: float = 3600.0,
    backend_factory: Callable[..., Backend] = load_backend,
    max_sessions_per_key: int = 16,
    caps: ResourceCaps | None = None,
    console_history: int = CONSOLE_HISTORY,
) -> AsyncIterator[tuple[ServerState, Starlette]]:
    """The server's state and app, with a nursery owning every session's instance; leaving it
    stops every session cleanly (each is recorded as ``stopped``). A key may have at most
    ``max_sessions_per_key`` live sessions on this server (0: no limit); ``caps`` bound what
    one session's resources may ask for; each session keeps its console's last
    ``console_history`` bytes in memory."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await open_store(db or f"sqlite:{data_dir / 'virtrio.db'}")
    try:
        secret_file = data_dir / "token-secret"
        if not secret_file.exists():
            secret_file.write_bytes(secrets.token_bytes(32))
            secret_file.chmod(0o600)
        async with open_service_nursery() as nursery:
            state = ServerState(
                store=store,
                manager=SessionManager(
                    store,
                    data_dir,
                    nursery,
                    server_id=server_id or socket.gethostname(),
                    backend_factory=backend_factory,
                    max_sessions_per_owner=max_sessions_per_key,
                    caps=caps,
                    console_history=console_history,
                ),
                auth=Authenticator(store, secret=secret_file.read_bytes(), token_ttl=token_ttl),
                limiter=RateLimiter(rate, burst),
                artefacts=ArtefactStore(data_dir / "artefacts"),
                metrics=Metrics(),
                server_id=server_id or socket.gethostname(),
            )
            await state.manager.adopt_leftovers()
            remove_stale_cgroups()  # of a previous server SIGKILLed here (its QEMU died too)
            try:
                yield state, build_app(state)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    for session_id in list(state.manager.live):
                        await state.manager.destroy(session_id)
                nursery.cancel_scope.cancel()
    finally:
        store.close()


async def serve(
    data_dir: Path,
    *,
    listen: str = "tcp://127.0.0.1:8080",
    db: str | None = None,
    shutdown: trio.Event | None = None,
    lease: float = 15.0,
    task_status: trio.TaskStatus[tuple[str, ServerState]] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve the API on ``listen`` (``tcp://127.0.0.1:PORT`` or ``unix:/path``) until
    ``shutdown`` is set or the task is cancelled; reports the URL it serves on. The server
    holds a lease of ``lease`` seconds in the store for its sessions (several servers may
    share a PostgreSQL store)."""
    config = hypercorn_config(_bind(listen))
    stop = shutdown if shutdown is not None else trio.Event()
    async with (
        open_server(data_dir, db=db, **options) as (state, app),
        trio.open_nursery() as lease_nursery,
    ):
        async with trio.open_nursery() as web:  # ends when hypercorn's graceful shutdown has
            binds: list[str] = await web.start(_hypercorn, app, config, stop)
            state.url = binds[0].replace("http://unix:", "unix:")
            await lease_nursery.start(state.manager.hold_lease, state.url, lease)
            task_status.started((state.url, state))
        lease_nursery.cancel_scope.cancel()


def hypercorn_config(bind: str) -> Any:
    """hypercorn's configuration of the server, bound to ``bind`` (``host:port`` or
    ``unix:/path``): no access log, no ``Server`` header, connections kept alive for any
    number of requests (hypercorn's default closes one after 1000: a client reconnects, a TCP
    handshake in the middle of a run of cheap requests), and the ``Date`` header made once a
    second rather than on every response."""
    from hypercorn.config import Config

    class _Config(Config):
        _date: tuple[int, list[tuple[bytes, bytes]]] = (0, [])

        def response_headers(self, protocol: str) -> list[tuple[bytes, bytes]]:
            # hypercorn's own formats the Date anew for every response (and adds Server and
            # Alt-Svc headers, which this server does not send): the Date, made when the
            # second changes
            second = int(time.time())
            if second != self._date[0]:
                self._date = (second, [(b"date", formatdate(second, usegmt=True).encode())])
            return list(self._date[1])

    config = _Config()
    config.bind = [bind]
    config.accesslog = None
    config.graceful_timeout = 5
    config.include_server_header = False
    config.keep_alive_max_requests = 2**62
    return config


async def _hypercorn(
    app: Starlette,
    config: Any,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    trigger = stop.wait
    framework: Any = app
    await hypercorn_serve(framework, config, shutdown_trigger=trigger, task_status=task_status)


def _bind(listen: str) -> str:
    from virtrio.errors import ConfigError

    if listen.startswith("tcp://"):
        host, _, port = listen.removeprefix("tcp://").rpartition(":")
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            raise ConfigError(
                f"--listen {listen!r}: the server binds only to 127.0.0.1 or a Unix socket"
            )
        return f"{host}:{port}"
    if listen.startswith("unix:"):
        return listen
    raise ConfigError(f"--listen {listen!r}: expected tcp://127.0.0.1:PORT or unix:/path")
