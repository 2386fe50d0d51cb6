"""Starlette's router with its routes indexed by the number of ``/`` in their path.

Starlette's :class:`~starlette.routing.Router` tries every route's regular expression in turn
until one matches: a route near the end of the table (the debugger's) costs a dozen matches
per request. A :class:`~starlette.routing.Route` whose parameters cannot hold a ``/`` (the
``str``, ``int``, ``float`` and ``uuid`` convertors) only matches paths with as many ``/`` as
its own, so :class:`IndexedRouter` tries only those, beside the routes whose paths vary in
length (mounts, ``{x:path}``, anything else), all in the table's order. The first full match
and the first partial one (the path matches, the method does not: a 405) are therefore the
ones Starlette's scan finds; a path nothing matches goes to Starlette's own scan (its slash
redirect and its 404). An app uses one in place of its own before it serves a request::

    app = Starlette(routes=routes, ...)
    app.router = IndexedRouter(routes)
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.convertors import FloatConvertor, IntegerConvertor, StringConvertor, UUIDConvertor
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

__all__ = ["IndexedRouter", "slashes"]

#: the convertors whose values never hold a ``/``
_ONE_SEGMENT = (StringConvertor, IntegerConvertor, FloatConvertor, UUIDConvertor)


def _route_path(scope: Scope) -> str:
    """The path the routes match: the request's without the app's root path (what Starlette's
    private ``get_route_path`` computes)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


def slashes(route: BaseRoute) -> int | None:
    """How many ``/`` every path ``route`` matches has, or None if that varies."""
    if type(route) is not Route:  # (a subclass may match as it likes)
        return None
    if not all(isinstance(c, _ONE_SEGMENT) for c in route.param_convertors.values()):
        return None
    return route.path_format.count("/")


class IndexedRouter(Router):
    """A :class:`~starlette.routing.Router` that tries only the routes that can match an HTTP
    request's path (see the module's docstring); it routes as Starlette's does."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        super().__init__(routes)
        counts = [slashes(route) for route in self.routes]
        self._by_slashes: dict[int, list[BaseRoute]] = {
            n: [r for r, c in zip(self.routes, counts, strict=True) if c in (n, None)]
            for n in {c for c in counts if c is not None}
        }
        self._varying = [r for r, c in zip(self.routes, counts, strict=True) if c is None]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        path = _route_path(scope)
        partial: BaseRoute | None = None
        partial_scope: Scope = {}
        for route in self._by_slashes.get(path.count("/"), self._varying):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self)
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            scope.setdefault("router", self)
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # Starlette's scan: a redirect or a 404
