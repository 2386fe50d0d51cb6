"""The indexed router routes every request as Starlette's own router does, and scans the whole
table only for a path no route matches: the server's table (its HTTP routes, a WebSocket, a
``{x:path}`` route and a mount), paths made of its own segments, parameters and stray slashes,
every method (Hypothesis)."""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings, strategies as st
from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send

from virtrio.engine.server import ROUTES
from virtrio.engine.server._router import IndexedRouter, slashes


def _recorder(name: str) -> Any:
    class Endpoint:  # an ASGI app (a class instance): Starlette calls it as one
        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            await send({"type": "http.response.start", "status": 299, "headers": []})
            await send({"type": "http.response.body", "body": name.encode()})

    return Endpoint()


def _table() -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route(spec.path, _recorder(f"{spec.method} {spec.path}"), methods=[spec.method])
        for spec in ROUTES
    ]
    routes += [
        Route("/api/v1/openapi.json", _recorder("openapi"), methods=["GET"]),
        WebSocketRoute("/api/v1/sessions/{id}/console", _recorder("console")),
        Route("/files/{rest:path}", _recorder("path convertor"), methods=["GET"]),
        Mount("/console", _recorder("mount")),
    ]
    return routes


class _Scan(Router):
    """Starlette's scan, counting the requests that reach it."""

    scans = 0

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.scans += 1
        await super().app(scope, receive, send)


class _Indexed(IndexedRouter, _Scan):
    """The indexed router, counting the requests it leaves to Starlette's scan."""


TABLE = _table()
STARLETTE, INDEXED = Router(TABLE), _Indexed(TABLE)

#: the segments of the table's own paths, and values a parameter may take
SEGMENTS = sorted(
    {part for spec in ROUTES for part in spec.path.split("/") if part and "{" not in part}
    | {"console", "files", "openapi.json", "s-1", "b-2", "x", "", "a/b"}
)


async def _answer(router: Router, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    sent: list[dict[str, Any]] = []
    scope: Scope = {
        "type": "http", "method": method, "path": path, "root_path": "", "query_string": b"",
        "headers": [(b"host", b"test")], "scheme": "http", "server": ("test", 80),
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await router(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), headers


#: what a path parameter is filled with (some values hold a slash, or are empty)
VALUES = st.sampled_from(["s-1", "b-2", "7", "1.5", "x", "", "a/b", "sessions"])


@st.composite
def _paths(draw: st.DrawFn) -> str:
    """A path of the table's, its parameters filled in; or one made of the table's segments."""
    if draw(st.booleans()):
        template = draw(st.sampled_from([str(getattr(r, "path", "/")) for r in TABLE]))
        parts = [draw(VALUES) if "{" in part else part for part in template.split("/")]
        path = "/".join(parts)
    else:
        path = "/" + "/".join(draw(st.lists(st.sampled_from(SEGMENTS), max_size=7)))
    return path + draw(st.sampled_from(["", "/", "/x"]))


@settings(max_examples=400)
@given(method=st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD"]), path=_paths())
def test_it_picks_the_route_starlette_picks(method: str, path: str) -> None:
    expected = trio.run(_answer, STARLETTE, method, path)
    scans = INDEXED.scans
    assert trio.run(_answer, INDEXED, method, path) == expected
    # only a path no route matches (a 404, or Starlette's redirect to the other slash) is left
    # to Starlette's scan of the whole table
    assert INDEXED.scans - scans == (0 if expected[0] in (299, 405) else 1)


def test_a_route_s_slashes_are_fixed_unless_a_parameter_may_hold_one() -> None:
    assert slashes(Route("/api/v1/sessions/{id}", _recorder(""))) == 4
    assert slashes(Route("/a/{n:int}/{f:float}/{u:uuid}", _recorder(""))) == 4
    assert slashes(Route("/files/{rest:path}", _recorder(""))) is None
    assert slashes(Mount("/console", _recorder(""))) is None
    assert slashes(WebSocketRoute("/ws/{id}", _recorder(""))) is None


def test_the_server_s_routes_are_indexed() -> None:
    assert all(slashes(route) is not None for route in TABLE[: len(ROUTES)])
