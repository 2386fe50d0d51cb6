"""The WebSocket streams of a session: its console (UART bytes both ways, binary frames, any
number of viewers through the console's Fanout) and its events (JSON text frames).

A refused connection is accepted and closed at once with a 44xx code (4401, 4403, 4404, 4409:
the HTTP status plus 4000) and the error body as the reason, since a browser cannot read the
HTTP answer to a refused upgrade.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._http import ApiError, as_api_error, authorise
from ._sessions import LIVE_STATES, LiveSession
from ._ws_forward import FORWARDED_HEADER, forward_socket

if TYPE_CHECKING:
    from ._app import ServerState

__all__ = ["MAX_FRAME", "console_socket", "events_socket"]

#: the largest binary frame the console sends (its history goes out in frames of this size:
#: one frame of megabytes is more than many clients accept)
MAX_FRAME = 64 * 1024


async def _open(ws: WebSocket, state: ServerState) -> tuple[LiveSession, bool] | None:
    """Accept ``ws``; returns its session and whether the caller may type, or None (closed,
    or forwarded to the server that runs the session and pumped until it ended)."""
    await ws.accept()
    try:
        principal = await authorise(ws, state, "read")
        assert principal is not None
        session_id = ws.path_params["id"]
        live = state.manager.live.get(session_id)
        if live is None:
            record = await state.store.get_session(session_id)
            if record is None:
                raise ApiError(404, "not_found", f"no session {session_id!r}")
            elsewhere = record.server != state.server_id and record.state in LIVE_STATES
            if elsewhere and FORWARDED_HEADER not in ws.headers:
                owner = await state.store.server_url(record.server, time.time())
                if owner is not None:
                    stream = ws.url.path.rsplit("/", 1)[-1]
                    with state.metrics.websocket_open(stream, "forwarded"):
                        await forward_socket(ws, owner, state.server_id)
                    return None
                # its owner's lease ran out: mark it lost (never shown as running)
                await state.store.expire_servers(time.time(), LIVE_STATES)
                record = await state.store.get_session(session_id) or record
            raise ApiError(409, "session_not_running", f"session {session_id} is {record.state}")
    except Exception as exc:
        error = as_api_error(exc)
        reason = json.dumps({"error": str(error), "code": error.code, "details": {}})[:120]
        await ws.close(code=4000 + error.status, reason=reason)
        return None
    return live, principal.owns(live.record.owner)


async def console_socket(ws: WebSocket) -> None:
    """``/api/v1/sessions/{id}/console``: one JSON text frame (``{"type": "console",
    "session_id", "read_only"}``), then the output so far and new output as it comes, in
    binary frames."""
    state: ServerState = ws.app.state.virtrio
    opened = await _open(ws, state)
    if opened is None:
        return
    live, may_type = opened
    console = getattr(live.instance, "console", None)
    if console is None:
        await ws.close(code=4409, reason="this backend has no console stream")
        return
    with console.subscribe() as sub, state.metrics.websocket_open("console", "served"):
        history = live.instance.console_output()  # no checkpoint since subscribing: no gap
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_input, ws, may_type, nursery.cancel_scope, live.instance)
            hello = {"type": "console", "session_id": live.record.id, "read_only": not may_type}
            await ws.send_text(json.dumps(hello))
            await _send_chunked(ws, history)
            async for chunk in sub:
                await _send_chunked(ws, chunk)
            nursery.cancel_scope.cancel()
    await _close(ws, 1000, "the session ended")


async def _send_chunked(ws: WebSocket, data: bytes) -> None:
    for start in range(0, len(data), MAX_FRAME):
        await ws.send_bytes(data[start : start + MAX_FRAME])


async def _read_input(
    ws: WebSocket, may_type: bool, scope: trio.CancelScope, instance: object = None
) -> None:
    """What a viewer sends: bytes (or text, as UTF-8) typed on the console go to the session's
    UART; a read-only viewer, or a backend without console input, gets an error frame."""
    write = getattr(instance, "write_console", None)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None and message.get("text") is not None:
                data = str(message["text"]).encode()
            if may_type and write is not None and data:
                try:
                    await write(data)
                    continue
                except Exception as exc:
                    error = as_api_error(exc)
                    body = {"error": str(error), "code": error.code, "details": error.details}
                    await ws.send_text(json.dumps(body))
                    continue
            text = "read-only console" if not may_type else "this backend takes no console input"
            code = "forbidden" if not may_type else "console_input_unsupported"
            await ws.send_text(json.dumps({"error": text, "code": code, "details": {}}))
    except WebSocketDisconnect:
        pass
    scope.cancel()


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the viewer went first
        await ws.close(code=code, reason=reason)


async def events_socket(ws: WebSocket) -> None:
    """``/api/v1/sessions/{id}/events``: state changes, stops, task progress as JSON."""
    state: ServerState = ws.app.state.virtrio
    opened = await _open(ws, state)
    if opened is None:
        return
    live, _ = opened
    with live.events.subscribe() as sub, state.metrics.websocket_open("events", "served"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_input, ws, False, nursery.cancel_scope)
            await ws.send_text(
                json.dumps(
                    {"type": "state", "session_id": live.record.id, "state": live.record.state}
                )
            )
            async for event in sub:
                await ws.send_text(json.dumps(event))
            nursery.cancel_scope.cancel()
    await _close(ws, 1000, "the session ended")
