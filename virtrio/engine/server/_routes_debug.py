"""Routes of a session's debugger: breakpoints, registers, memory, run control; and its
display (a screenshot)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from virtrio.engine.backends import Breakpoint, BreakpointKind

from ._http import ApiError, Ctx, JSONResponse, RouteSpec
from ._routes_sessions import find_session
from ._schemas import BREAKPOINT, PAGE_OF, ref

__all__ = ["DEBUG_ROUTES"]

MAX_MEMORY_READ = 1 << 16


def _bp_json(bid: str, bp: Breakpoint, address: int | None) -> dict[str, Any]:
    return {
        "id": bid,
        "address": address,
        "symbol": bp.symbol,
        "kind": str(bp.kind),
        "length": bp.length,
    }


async def add_breakpoint(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    body = await ctx.body()
    try:
        bp = Breakpoint(
            address=body.get("address"),
            symbol=body.get("symbol"),
            kind=BreakpointKind(body.get("kind", "software")),
            length=int(body.get("length", 4)),
        )
    except (ValueError, TypeError) as exc:
        raise ApiError(422, "invalid_breakpoint", str(exc)) from None
    address = await live.instance.set_breakpoint(bp)
    bid = live.next_id("b")
    live.breakpoints[bid] = bp
    return JSONResponse(_bp_json(bid, bp, address), status_code=201)


async def list_breakpoints(ctx: Ctx) -> Response:
    live = await find_session(ctx)
    items = [_bp_json(bid, bp, bp.address) for bid, bp in live.breakpoints.items()]
    return JSONResponse({"items": items, "next_cursor": None})


async def remove_breakpoint(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    bid = ctx.param("bid")
    if bid not in live.breakpoints:
        raise ApiError(404, "not_found", f"no breakpoint {bid!r}")
    await live.instance.remove_breakpoint(live.breakpoints.pop(bid))
    return Response(status_code=204)


async def registers(ctx: Ctx) -> Response:
    live = await find_session(ctx)
    names = ctx.request.query_params.get("names")
    scope = [n for n in names.split(",") if n] if names else None
    return JSONResponse({"registers": await live.instance.read_registers(scope)})


async def screenshot(ctx: Ctx) -> Response:
    live = await find_session(ctx)
    png = await live.instance.screenshot()
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


async def memory(ctx: Ctx) -> Response:
    live = await find_session(ctx)
    address = ctx.query_int("address", None, low=0, high=(1 << 64) - 1)
    size = ctx.query_int("size", None, low=1, high=MAX_MEMORY_READ)
    data = await live.instance.read_memory(address, size)
    return JSONResponse({"address": address, "size": size, "data": data.hex()})


async def continue_(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    body = await ctx.body()
    await live.instance.continue_()
    if not body.get("wait"):
        return JSONResponse({"state": "running"})
    timeout = body.get("timeout", 30)
    if not isinstance(timeout, int | float) or not 0 < timeout <= 600:
        raise ApiError(422, "invalid_request", "timeout must be a number of seconds in (0, 600]")
    pc = await live.instance.wait_stop(timeout=float(timeout))
    live.publish("stopped", pc=pc)
    return JSONResponse({"state": "stopped", "pc": pc})


async def step(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    pc = await live.instance.step()
    live.publish("stopped", pc=pc)
    return JSONResponse({"state": "stopped", "pc": pc})


async def interrupt(ctx: Ctx) -> Response:
    live = await find_session(ctx, write=True)
    await live.instance.pause()
    live.publish("stopped", pc=None)
    return JSONResponse({"state": "stopped"})


_S = "/api/v1/sessions/{id}"
_ID = ({"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},)
_OK = {"type": "object"}
DEBUG_ROUTES = (
    RouteSpec(
        "POST",
        f"{_S}/debug/breakpoints",
        "write",
        add_breakpoint,
        "set a breakpoint",
        201,
        ref(BREAKPOINT),
        request={"type": "object"},
        params=_ID,
    ),
    RouteSpec(
        "GET",
        f"{_S}/debug/breakpoints",
        "read",
        list_breakpoints,
        "list breakpoints",
        200,
        PAGE_OF(BREAKPOINT),
        params=_ID,
    ),
    RouteSpec(
        "DELETE",
        f"{_S}/debug/breakpoints/{{bid}}",
        "write",
        remove_breakpoint,
        "remove a breakpoint",
        204,
        params=(
            *_ID,
            {"name": "bid", "in": "path", "required": True, "schema": {"type": "string"}},
        ),
    ),
    RouteSpec(
        "GET",
        f"{_S}/debug/registers",
        "read",
        registers,
        "read registers",
        200,
        _OK,
        params=(*_ID, {"name": "names", "in": "query", "schema": {"type": "string"}}),
    ),
    RouteSpec(
        "GET",
        f"{_S}/screenshot",
        "read",
        screenshot,
        "the board's display as a PNG (409 unsupported_capability: the board has none)",
        200,
        params=_ID,
        raw="image/png",
    ),
    RouteSpec(
        "GET",
        f"{_S}/debug/memory",
        "read",
        memory,
        "read memory",
        200,
        _OK,
        params=(
            *_ID,
            {"name": "address", "in": "query", "required": True, "schema": {"type": "string"}},
            {"name": "size", "in": "query", "required": True, "schema": {"type": "string"}},
        ),
    ),
    RouteSpec(
        "POST",
        f"{_S}/debug/continue",
        "write",
        continue_,
        "continue (wait: until a stop)",
        200,
        _OK,
        request={"type": "object"},
        params=_ID,
    ),
    RouteSpec("POST", f"{_S}/debug/step", "write", step, "one instruction", 200, _OK, params=_ID),
    RouteSpec(
        "POST", f"{_S}/debug/interrupt", "write", interrupt, "stop the CPU", 200, _OK, params=_ID
    ),
)
