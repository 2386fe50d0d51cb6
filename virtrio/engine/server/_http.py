"""The HTTP plumbing of the server: the error body, the route table, and the wrapper that
authenticates, authorises, rate-limits, audits and measures every request."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import attrs
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse as _StarletteJSON, Response
from starlette.types import Receive, Scope, Send

from virtrio.engine.backends import (
    BoardConfigError,
    ResourceLimitExceededError,
    UnsupportedCapabilityError,
)
from virtrio.errors import ConfigError, VirtrioError, VirtrioTimeoutError

from ._auth import AuthError, Principal, Role
from ._resources import ResourceRequestError
from ._sessions import SessionLimitError

if TYPE_CHECKING:
    from ._app import ServerState

__all__ = [
    "ApiError",
    "Ctx",
    "Endpoint",
    "JSONResponse",
    "Perm",
    "RouteSpec",
    "as_api_error",
    "authorise",
    "error_response",
    "wrap",
]

#: who may call a route: anyone, any key, a developer or admin key, an admin key
Perm = Literal["public", "read", "write", "admin"]


#: one encoder for every response (``json.dumps`` with Starlette's options makes a new one
#: each call); the same bytes as Starlette's JSONResponse
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class JSONResponse(_StarletteJSON):
    """Starlette's JSON response, rendered by one shared encoder."""

    def render(self, content: Any) -> bytes:
        return _ENCODER.encode(content).encode("utf-8")


class ApiError(Exception):
    """An error the API answers with ``{error, code, details}`` and ``status``."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.details = details
        self.headers: dict[str, str] = {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The one error body of every 4xx and 5xx."""
    body = {"error": message, "code": code, "details": details or {}}
    return JSONResponse(body, status_code=status, headers=headers)


def as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, SessionLimitError):
        return ApiError(409, "session_limit", str(exc), limit=exc.limit, running=exc.running)
    if isinstance(exc, ResourceRequestError):
        return ApiError(422, exc.code, str(exc), field=exc.field, **exc.details)
    if isinstance(exc, ResourceLimitExceededError):
        return ApiError(409, "resource_limit", str(exc), resource=exc.resource, limit=exc.limit)
    if isinstance(exc, BoardConfigError):
        return ApiError(422, "invalid_board", str(exc))
    if isinstance(exc, UnsupportedCapabilityError):
        return ApiError(409, "unsupported_capability", str(exc), capability=str(exc.capability))
    if isinstance(exc, VirtrioTimeoutError):
        return ApiError(504, "timeout", str(exc))
    if isinstance(exc, ConfigError):
        return ApiError(422, "invalid_request", str(exc))
    if isinstance(exc, VirtrioError):
        return ApiError(409, "backend_error", str(exc), type=type(exc).__name__)
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


@attrs.define
class Ctx:
    """One request as a handler sees it."""

    request: Request
    state: ServerState
    principal: Principal | None

    @property
    def caller(self) -> Principal:
        """The authenticated caller (routes that are not public always have one)."""
        assert self.principal is not None
        return self.principal

    def param(self, name: str) -> str:
        """A path parameter."""
        return str(self.request.path_params[name])

    async def body(self) -> dict[str, Any]:
        """The JSON object body (``{}`` when empty).

        Raises:
            ApiError: 422 for a body that is not a JSON object.
        """
        raw = await self.request.body()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ApiError(422, "invalid_json", f"the body is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ApiError(422, "invalid_json", "the body must be a JSON object")
        return value

    def query_int(self, name: str, default: int | None, *, low: int, high: int) -> int:
        """An integer query parameter within ``[low, high]`` (decimal or 0x hex)."""
        text = self.request.query_params.get(name)
        if text is None:
            if default is None:
                raise ApiError(422, "invalid_request", f"query parameter {name!r} is required")
            return default
        try:
            value = int(text, 0)
        except ValueError:
            raise ApiError(422, "invalid_request", f"{name}={text!r} is not an integer") from None
        if not low <= value <= high:
            raise ApiError(422, "invalid_request", f"{name}={value} is outside [{low}, {high}]")
        return value

    def require_owner(self, owner: str, what: str) -> None:
        """Raise 403 unless the caller may change a resource owned by ``owner``."""
        if not self.caller.owns(owner):
            raise ApiError(403, "forbidden", f"{self.caller.role} key may not change {what}")


Handler = Callable[[Ctx], Awaitable[Response]]


@attrs.frozen
class RouteSpec:
    """One route: what the app serves and what the OpenAPI document says."""

    method: str
    path: str
    perm: Perm
    handler: Handler
    summary: str
    status: int = 200
    response: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    params: tuple[dict[str, Any], ...] = ()
    raw: str | None = None  #: the media type of a response that is not JSON


async def _authenticate(request: HTTPConnection, state: ServerState) -> Principal:
    key = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if key is None and not auth and request.scope["type"] == "websocket":
        key = request.query_params.get("api_key")
        token = request.query_params.get("token")
        if token:
            return await state.auth.check_token(token)
    if key is not None:
        return await state.auth.check_key(key)
    if auth.lower().startswith("bearer "):
        return await state.auth.check_token(auth[7:].strip())
    raise AuthError("no credentials: send X-API-Key or Authorization: Bearer")


_ALLOWED: dict[Perm, frozenset[Role]] = {
    "public": frozenset(Role),
    "read": frozenset(Role),
    "write": frozenset({Role.ADMIN, Role.DEVELOPER}),
    "admin": frozenset({Role.ADMIN}),
}


async def authorise(request: HTTPConnection, state: ServerState, perm: Perm) -> Principal | None:
    """The caller of a request allowed ``perm``; raises :class:`ApiError` (401, 403, 429)."""
    if perm == "public":
        return None
    try:
        principal = await _authenticate(request, state)
    except AuthError as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    if principal.role not in _ALLOWED[perm]:
        raise ApiError(403, "forbidden", f"a {principal.role} key may not do this ({perm} only)")
    wait = state.limiter.take(principal.key_id, time.monotonic())
    if wait > 0:
        error = ApiError(429, "rate_limited", "too many requests for this key", retry_after=wait)
        error.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
        raise error
    return principal


@attrs.frozen
class Endpoint:
    """The ASGI app of one route (:func:`wrap`). An ASGI app rather than a Starlette
    endpoint function: Starlette wraps a function in a second exception-handling layer, which
    this one does not need (every exception of a handler becomes an error response here; one
    raised while sending reaches the app's own exception middleware, as before)."""

    spec: RouteSpec
    state: ServerState
    observe: Callable[[int, float], None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.respond(Request(scope, receive, send))
        await response(scope, receive, send)

    async def respond(self, request: Request) -> Response:
        """Authenticate, authorise, run the handler, measure and audit: the response."""
        spec, state = self.spec, self.state
        started = time.perf_counter()
        principal: Principal | None = None
        try:
            principal = await authorise(request, state, spec.perm)
            response = await spec.handler(Ctx(request, state, principal))
        except Exception as exc:
            error = as_api_error(exc)
            if error.status >= 500:
                state.log.exception("%s %s failed", spec.method, request.url.path)
            response = error_response(
                error.status, error.code, str(error), error.details, error.headers
            )
        status = response.status_code
        self.observe(status, time.perf_counter() - started)
        if spec.method != "GET" or status in (401, 403):
            actor = principal.key_id if principal is not None else "-"
            await state.store.audit(
                time.time(), actor, f"{spec.method} {spec.path}", request.url.path, status
            )
        return response


def wrap(spec: RouteSpec, state: ServerState) -> Endpoint:
    """The ASGI app serving ``spec``: it authenticates, authorises, rate-limits, audits
    and measures every request."""
    return Endpoint(spec, state, state.metrics.observer(spec.method, spec.path))
