"""Routes of sessions: CRUD, power, programs (debugging is in ``_routes_debug``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from virtrio.engine.backends import (
    ProgramFormat,
    StartOptions,
    board_template,
    parse_board,
    template_names,
)

from ._http import ApiError, Ctx, JSONResponse, RouteSpec
from ._resources import check_resources
from ._schemas import PAGE_OF, SESSION, ref
from ._sessions import LIVE_STATES, LiveSession
from ._store import SessionRecord

__all__ = ["SESSION_ROUTES", "find_session", "session_json"]

MAX_PROGRAM = 64 << 20


def session_json(record: SessionRecord) -> dict[str, Any]:
    """A session as the API shows it."""
    return {
        "id": record.id,
        "owner": record.owner,
        "backend": record.backend,
        "board": record.board,
        "resources": record.resources,
        "state": record.state,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "server": record.server,
        "detail": record.detail,
        "failure": record.failure,
    }


async def find_session(ctx: Ctx, *, write: bool = False, live: bool = True) -> LiveSession:
    """The session of the path's ``id``: 404 if unknown, 403 if the caller may not change it,
    409 if it has no instance (stopped, expired, lost)."""
    session_id = ctx.param("id")
    found = ctx.state.manager.live.get(session_id)
    record = found.record if found is not None else await ctx.state.store.get_session(session_id)
    if record is None:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    if write:
        ctx.require_owner(record.owner, f"session {session_id}")
    if found is None:
        record = await _owner_checked(ctx, record)
        if record.server != ctx.state.server_id and record.state in LIVE_STATES:
            owner_url = await ctx.state.store.server_url(record.server, time.time())
            if owner_url is not None:
                url = ctx.request.url
                target = f"{owner_url}{url.path}" + (f"?{url.query}" if url.query else "")
                moved = ApiError(
                    307,
                    "moved",
                    f"session {session_id} runs on {record.server}",
                    server=record.server,
                    location=target,
                )
                moved.headers["Location"] = target
                raise moved
        raise ApiError(409, "session_not_running", f"session {session_id} is {record.state}")
    return found


async def _owner_checked(ctx: Ctx, record: SessionRecord) -> SessionRecord:
    """``record``, marked lost first if another server owns it and that server's lease has
    ended (its owner died: never shown as running)."""
    if record.server == ctx.state.server_id or record.state not in LIVE_STATES:
        return record
    now = time.time()
    if await ctx.state.store.server_url(record.server, now) is not None:
        return record
    await ctx.state.store.expire_servers(now, LIVE_STATES)
    return await ctx.state.store.get_session(record.id) or record


async def create_session(ctx: Ctx) -> Response:
    body = await ctx.body()
    backend = body.get("backend", "qemu")
    board = body.get("board")
    if not isinstance(backend, str):
        raise ApiError(422, "invalid_request", "backend must be a backend name")
    if isinstance(board, str):
        stored = await ctx.state.store.get_board(board)
        if stored is not None:
            config = parse_board(stored)
        elif board in template_names():
            config = board_template(board)
        else:
            known = sorted({*template_names(), *(await ctx.state.store.list_boards())})
            raise ApiError(422, "unknown_board", f"no board template {board!r}", known=known)
    elif isinstance(board, dict):
        config = parse_board(board)
    else:
        raise ApiError(422, "invalid_request", "board must be a template name or a BoardConfig")
    node_id = body.get("node")
    node = config.node(node_id) if isinstance(node_id, str) else config.nodes[0]
    resources = check_resources(body.get("resources"), ctx.state.manager.caps)
    unknown = sorted(set(body) - {"backend", "board", "node", "resources"})
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown fields {unknown}")
    live = await ctx.state.manager.create(
        owner=ctx.caller.key_id,
        backend_name=backend,
        node=node,
        board={"name": board} if isinstance(board, str) else {"config": board},
        resources=resources,
    )
    ctx.state.metrics.created.inc()
    return JSONResponse(session_json(live.record), status_code=201)


async def list_sessions(ctx: Ctx) -> Response:
    q = ctx.request.query_params
    page = await ctx.state.store.list_sessions(
        limit=ctx.query_int("limit", 50, low=1, high=1000),
        cursor=q.get("cursor"),
        sort=q.get("sort", "created_at"),
        state=q.get("state"),
        backend=q.get("backend"),
        owner=q.get("owner"),
    )
    live = ctx.state.manager.live
    items = [session_json(live[r.id].record if r.id in live else r) for r in page.items]
    return JSONResponse({"items": items, "next_cursor": page.next_cursor})


async def get_session(ctx: Ctx) -> Response:
    session_id = ctx.param("id")
    found = ctx.state.manager.live.get(session_id)
    record = found.record if found is not None else await ctx.state.store.get_session(session_id)
    if record is None:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    return JSONResponse(session_json(await _owner_checked(ctx, record)))


async def delete_session(ctx: Ctx) -> Response:
    session_id = ctx.param("id")
    record = await ctx.state.store.get_session(session_id)
    if record is None:
        raise ApiError(404, "not_found", f"no session {session_id!r}")
    ctx.require_owner(record.owner, f"session {session_id}")
    if session_id in ctx.state.manager.live:
        await ctx.state.manager.destroy(session_id)
        ctx.state.metrics.destroyed.inc()
    await ctx.state.store.delete_session(session_id)
    return Response(status_code=204)


async def power(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    action = (await ctx.body()).get("action")
    inst = live.instance
    actions = {
        "on": inst.power_on,
        "off": inst.power_off,
        "reset": inst.reset,
        "pause": inst.pause,
        "resume": inst.resume,
    }
    if action not in actions:
        raise ApiError(
            422, "invalid_request", f"action={action!r}: expected one of {list(actions)}"
        )
    await actions[action]()
    live.publish("power", action=action)
    return JSONResponse({"session_id": live.record.id, "action": action})


async def upload_program(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    q = ctx.request.query_params
    data = await ctx.request.body()
    if not data or len(data) > MAX_PROGRAM:
        raise ApiError(422, "invalid_program", f"a program is 1 byte to {MAX_PROGRAM} bytes")
    try:
        kind = ProgramFormat(q.get("format", "elf"))
    except ValueError:
        raise ApiError(422, "invalid_request", "format must be elf or raw") from None
    address = ctx.query_int("load_address", -1, low=-1, high=(1 << 64) - 1)
    digest = ctx.state.artefacts.put(data)
    pid = await live.instance.upload_program(
        data, format=kind, load_address=None if address < 0 else address, name=q.get("name", "")
    )
    live.programs[pid] = {
        "program_id": pid,
        "digest": digest,
        "size": len(data),
        "format": str(kind),
    }
    return JSONResponse(live.programs[pid], status_code=201)


async def start_program(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    pid = ctx.param("pid")
    if pid not in live.programs:
        raise ApiError(404, "not_found", f"no program {pid!r} in session {live.record.id}")
    body = await ctx.body()
    entry = body.get("entry")
    if entry is not None and not isinstance(entry, int):
        raise ApiError(422, "invalid_request", "entry must be an integer address")
    await live.instance.start_program(
        pid, StartOptions(entry=entry, halted=bool(body.get("halted")))
    )
    ctx.state.metrics.programs.inc()
    live.publish("program", program_id=pid, state="started")
    return JSONResponse({"program_id": pid, "state": "started"})


_S = "/api/v1/sessions/{id}"
_ID = ({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},)
_OK = {"type": "object"}
SESSION_ROUTES = (
    RouteSpec(
        "POST",
        "/api/v1/sessions",
        "write",
        create_session,
        "create a session",
        201,
        ref(SESSION),
        request={"type": "object"},
    ),
    RouteSpec(
        "GET",
        "/api/v1/sessions",
        "read",
        list_sessions,
        "list sessions",
        200,
        PAGE_OF(SESSION),
        params=(
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {
                "name": "sort",
                "in": "query",
                "schema": {"enum": ["created_at", "-created_at", "id", "-id"]},
            },
            {"name": "state", "in": "query", "schema": {"type": "string"}},
            {"name": "backend", "in": "query", "schema": {"type": "string"}},
            {"name": "owner", "in": "query", "schema": {"type": "string"}},
        ),
    ),
    RouteSpec("GET", _S, "read", get_session, "one session", 200, ref(SESSION), params=_ID),
    RouteSpec("DELETE", _S, "write", delete_session, "stop and delete a session", 204, params=_ID),
    RouteSpec(
        "POST",
        f"{_S}/power",
        "write",
        power,
        "power on/off/reset/pause/resume",
        200,
        _OK,
        request={
            "type": "object",
            "properties": {"action": {"enum": ["on", "off", "reset", "pause", "resume"]}},
        },
        params=_ID,
    ),
    RouteSpec(
        "POST",
        f"{_S}/programs",
        "write",
        upload_program,
        "upload a program (the body)",
        201,
        _OK,
        request={"type": "string", "format": "binary"},
        params=_ID,
    ),
    RouteSpec(
        "POST",
        f"{_S}/programs/{{pid}}/start",
        "write",
        start_program,
        "start a program",
        200,
        _OK,
        request={"type": "object"},
        params=(
            *_ID,
            {"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}},
        ),
    ),
)
