"""Routes of snapshots, coverage, traces, tasks, artefacts, boards, backends, keys, tokens,
the audit log, health and metrics."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, Response

from virtrio.engine.backends import (
    Artifact,
    backend_names,
    board_template,
    parse_board,
    template_names,
)

from ._auth import Role
from ._http import ApiError, Ctx, JSONResponse, RouteSpec
from ._routes_sessions import find_session
from ._schemas import ERROR, PAGE_OF, TASK, ref

__all__ = ["MISC_ROUTES"]


def _artefact(ctx: Ctx, artifact: Artifact) -> dict[str, Any]:
    digest = ctx.state.artefacts.put_file(artifact.path)
    size = artifact.path.stat().st_size
    url = f"/api/v1/artefacts/{digest}"
    return {"digest": digest, "size": size, "media_type": artifact.media_type, "url": url}


def _accepted(task_json: dict[str, Any]) -> Response:
    return JSONResponse(
        task_json, status_code=202, headers={"Location": f"/api/v1/tasks/{task_json['id']}"}
    )


async def create_snapshot(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)

    async def job() -> dict[str, Any]:
        sid = await live.instance.create_snapshot()
        image = live.instance.workdir / "snapshots.qcow2"
        if image.exists():
            ctx.state.metrics.snapshot_bytes.observe(image.stat().st_size)
        live.snapshots[sid] = {"id": sid, "session_id": live.record.id}
        return live.snapshots[sid]

    return _accepted(
        ctx.state.manager.start_task(live, "snapshot", ctx.caller.key_id, job).to_json()
    )


async def list_snapshots(ctx: Ctx) -> Response:
    live = await find_session(ctx)
    return JSONResponse({"items": list(live.snapshots.values()), "next_cursor": None})


async def restore_snapshot(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    sid = ctx.param("sid")
    if sid not in live.snapshots:
        raise ApiError(404, "not_found", f"no snapshot {sid!r} in session {live.record.id}")

    async def job() -> dict[str, Any]:
        await live.instance.restore_snapshot(sid)
        return {"id": sid, "restored": True}

    return _accepted(
        ctx.state.manager.start_task(live, "restore", ctx.caller.key_id, job).to_json()
    )


async def coverage(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)

    async def job() -> dict[str, Any]:
        return _artefact(ctx, await live.instance.export_coverage())

    return _accepted(
        ctx.state.manager.start_task(live, "coverage", ctx.caller.key_id, job).to_json()
    )


async def trace(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)

    async def job() -> dict[str, Any]:
        return _artefact(ctx, await live.instance.export_trace())

    return _accepted(ctx.state.manager.start_task(live, "trace", ctx.caller.key_id, job).to_json())


async def get_task(ctx: Ctx) -> Response:
    task = ctx.state.manager.tasks.get(ctx.param("tid"))
    if task is None:
        raise ApiError(404, "not_found", f"no task {ctx.param('tid')!r}")
    return JSONResponse(task.to_json())


async def get_artefact(ctx: Ctx) -> Response:
    digest = ctx.param("digest")
    path = ctx.state.artefacts.path(digest)
    if path is None:
        raise ApiError(404, "not_found", f"no artefact {digest!r}")
    b64 = base64.b64encode(bytes.fromhex(digest)).decode()
    headers = {"Digest": f"sha-256={b64}", "ETag": f'"{digest}"', "Repr-Digest": f"sha-256=:{b64}:"}
    return FileResponse(Path(path), media_type="application/octet-stream", headers=headers)


async def list_boards(ctx: Ctx) -> Response:
    items = [
        {"name": n, "source": "template", "config": board_template(n).to_json()}
        for n in template_names()
    ]
    stored = await ctx.state.store.list_boards()
    items += [{"name": n, "source": "stored", "config": c} for n, c in stored.items()]
    return JSONResponse({"items": items, "next_cursor": None})


def _board_body(body: dict[str, Any]) -> dict[str, Any]:
    config = body.get("config")
    if not isinstance(config, dict):
        raise ApiError(422, "invalid_request", "config must be a BoardConfig object")
    return config


async def add_board(ctx: Ctx) -> Response:
    body = await ctx.body()
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ApiError(422, "invalid_request", "name must be a non-empty string (at most 100)")
    config = parse_board(_board_body(body)).to_json()
    if name in template_names() or not await ctx.state.store.put_board(name, config, _now()):
        raise ApiError(409, "conflict", f"a board named {name!r} exists")
    return JSONResponse({"name": name, "source": "stored", "config": config}, status_code=201)


async def validate_board(ctx: Ctx) -> Response:
    from virtrio.engine.backends import BoardConfigError

    config = _board_body(await ctx.body())
    try:
        board = parse_board(config)
        backend = ctx.request.query_params.get("backend")
        if backend is not None:
            for node in board.nodes:
                ctx.state.manager.backend(backend).check_node(node)
    except BoardConfigError as exc:
        return JSONResponse({"valid": False, "errors": [str(exc)]})
    return JSONResponse({"valid": True, "errors": []})


async def list_backends(ctx: Ctx) -> Response:
    items = []
    for name in backend_names():
        items.append(
            {"name": name, "capabilities": ctx.state.manager.backend(name).capabilities().to_json()}
        )
    return JSONResponse({"items": items, "next_cursor": None})


async def create_key(ctx: Ctx) -> Response:
    body = await ctx.body()
    try:
        role = Role(body.get("role", "developer"))
    except ValueError:
        raise ApiError(
            422, "invalid_request", f"role must be one of {[str(r) for r in Role]}"
        ) from None
    record, key = await ctx.state.auth.create_key(role, str(body.get("name", "")))
    return JSONResponse(
        {"id": record.id, "name": record.name, "role": record.role, "key": key}, status_code=201
    )


async def list_keys(ctx: Ctx) -> Response:
    keys = await ctx.state.store.list_keys()
    items = [
        {
            "id": k.id,
            "name": k.name,
            "role": k.role,
            "created_at": k.created_at,
            "revoked": k.revoked,
        }
        for k in keys
    ]
    return JSONResponse({"items": items, "next_cursor": None})


async def revoke_key(ctx: Ctx) -> Response:
    if not await ctx.state.store.revoke_key(ctx.param("kid")):
        raise ApiError(404, "not_found", f"no key {ctx.param('kid')!r}")
    ctx.state.auth.forget(ctx.param("kid"))  # refused from the next request on
    return Response(status_code=204)


async def mint_token(ctx: Ctx) -> Response:
    ttl = (await ctx.body()).get("ttl_s", ctx.state.auth.token_ttl)
    if not isinstance(ttl, int | float) or not 1 <= ttl <= 86400:
        raise ApiError(422, "invalid_request", "ttl_s must be 1 to 86400 seconds")
    token, expires = ctx.state.auth.mint_token(ctx.caller, float(ttl))
    return JSONResponse(
        {"token": token, "token_type": "Bearer", "expires_at": expires}, status_code=201
    )


async def audit(ctx: Ctx) -> Response:
    page = await ctx.state.store.list_audit(
        limit=ctx.query_int("limit", 50, low=1, high=1000),
        cursor=ctx.request.query_params.get("cursor"),
    )
    items = [
        {
            "seq": e.seq,
            "at": e.at,
            "actor": e.actor,
            "action": e.action,
            "resource": e.resource,
            "outcome": e.outcome,
        }
        for e in page.items
    ]
    return JSONResponse({"items": items, "next_cursor": page.next_cursor})


async def healthz(ctx: Ctx) -> Response:
    await ctx.state.store.schema_version()
    return JSONResponse(
        {"status": "ok", "sessions": len(ctx.state.manager.live), "server": ctx.state.server_id}
    )


async def metrics(ctx: Ctx) -> Response:
    ctx.state.metrics.active.set(len(ctx.state.manager.live))
    body, media = ctx.state.metrics.render()
    return Response(body, media_type=media)


def _now() -> float:
    import time

    return time.time()


_S = "/api/v1/sessions/{id}"
_ID = ({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},)
_OK = {"type": "object"}
_PAGE = {"type": "object", "required": ["items", "next_cursor"]}
_LIMIT = (
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
)


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


MISC_ROUTES = (
    RouteSpec(
        "POST",
        f"{_S}/snapshots",
        "write",
        create_snapshot,
        "save a snapshot (a task)",
        202,
        ref(TASK),
        params=_ID,
    ),
    RouteSpec(
        "GET", f"{_S}/snapshots", "read", list_snapshots, "list snapshots", 200, _PAGE, params=_ID
    ),
    RouteSpec(
        "POST",
        f"{_S}/snapshots/{{sid}}/restore",
        "write",
        restore_snapshot,
        "restore (a task)",
        202,
        ref(TASK),
        params=(*_ID, _path("sid")),
    ),
    RouteSpec(
        "POST",
        f"{_S}/coverage",
        "write",
        coverage,
        "export lcov coverage (a task)",
        202,
        ref(TASK),
        params=_ID,
    ),
    RouteSpec(
        "POST",
        f"{_S}/trace",
        "write",
        trace,
        "export the trace (a task)",
        202,
        ref(TASK),
        params=_ID,
    ),
    RouteSpec(
        "GET",
        "/api/v1/tasks/{tid}",
        "read",
        get_task,
        "a task's state and result",
        200,
        ref(TASK),
        params=(_path("tid"),),
    ),
    RouteSpec(
        "GET",
        "/api/v1/artefacts/{digest}",
        "read",
        get_artefact,
        "download an artefact",
        200,
        params=(_path("digest"),),
        raw="application/octet-stream",
    ),
    RouteSpec("GET", "/api/v1/boards", "read", list_boards, "board templates", 200, _PAGE),
    RouteSpec(
        "POST",
        "/api/v1/boards",
        "write",
        add_board,
        "store a board template",
        201,
        _OK,
        request=_OK,
    ),
    RouteSpec(
        "POST",
        "/api/v1/boards/validate",
        "read",
        validate_board,
        "validate a board config",
        200,
        _OK,
        request=_OK,
        params=({"name": "backend", "in": "query", "schema": {"type": "string"}},),
    ),
    RouteSpec(
        "GET",
        "/api/v1/backends",
        "read",
        list_backends,
        "backend types and capabilities",
        200,
        _PAGE,
    ),
    RouteSpec(
        "POST",
        "/api/v1/keys",
        "admin",
        create_key,
        "create an API key (shown once)",
        201,
        _OK,
        request=_OK,
    ),
    RouteSpec("GET", "/api/v1/keys", "admin", list_keys, "list API keys", 200, _PAGE),
    RouteSpec(
        "DELETE",
        "/api/v1/keys/{kid}",
        "admin",
        revoke_key,
        "revoke an API key",
        204,
        params=(_path("kid"),),
    ),
    RouteSpec(
        "POST",
        "/api/v1/auth/tokens",
        "read",
        mint_token,
        "mint a bearer token from a key",
        201,
        _OK,
        request=_OK,
    ),
    RouteSpec(
        "GET",
        "/api/v1/audit",
        "admin",
        audit,
        "the audit log, newest first",
        200,
        _PAGE,
        params=_LIMIT,
    ),
    RouteSpec("GET", "/healthz", "public", healthz, "health", 200, _OK),
    RouteSpec("GET", "/metrics", "public", metrics, "Prometheus metrics", 200, raw="text/plain"),
)

_ = ERROR, PAGE_OF, hashlib
