"""A session's WebSocket forwarded to the server that runs it (several servers on one store).

A REST request for another server's session is answered 307, but WebSocket clients (browsers
among them) do not follow redirects on the upgrade; so the server that receives ``/console``
or ``/events`` of such a session opens the same WebSocket on the owner (trio-websocket, the
caller's credentials passed on) and pumps frames both ways, binary and text as they come. When
either end closes, the other is closed with the same code and reason; a hop header keeps a
forwarded socket from being forwarded again (an owner that no longer runs the session refuses
it itself).
"""

from __future__ import annotations

import contextlib
import json

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    wrap_client_stream,
)

__all__ = ["FORWARDED_HEADER", "forward_socket"]

#: set on a forwarded socket's upgrade request: the owner then never forwards it on
FORWARDED_HEADER = "x-virtrio-forwarded"
#: the client's headers passed on to the owner (the credentials)
_PASSED = ("x-api-key", "authorization")
#: how long closing the owner's end may wait for its close handshake
_CLOSE_GRACE = 5.0


async def _connect_owner(owner: str) -> tuple[trio.abc.Stream, str]:
    if owner.startswith("unix:"):
        return await trio.open_unix_socket(owner.removeprefix("unix:")), "localhost"
    host, _, port = owner.removeprefix("http://").rpartition(":")
    return await trio.open_tcp_stream(host, int(port)), host


async def forward_socket(ws: WebSocket, owner: str, server_id: str) -> None:
    """Pump the accepted ``ws`` to the same path on ``owner`` (its URL, ``http://host:port``
    or ``unix:/path``) until either end closes; a failure to reach the owner closes ``ws``
    with 4502 (a bad gateway) and an error body."""
    resource = ws.url.path + (f"?{ws.url.query}" if ws.url.query else "")
    headers = [(name.encode(), ws.headers[name].encode()) for name in _PASSED if name in ws.headers]
    headers.append((FORWARDED_HEADER.encode(), server_id.encode()))
    try:
        stream, host = await _connect_owner(owner)
    except OSError as exc:
        await _close(ws, 4502, _reason(f"the session's server {owner} is unreachable: {exc}"))
        return
    async with stream, trio.open_nursery() as nursery:
        try:
            # only TCP and Unix streams are used, which is what the client needs of them
            upstream = await wrap_client_stream(
                nursery,
                stream,  # type: ignore[arg-type]
                host,
                resource,
                extra_headers=headers,
                max_message_size=4 << 20,
            )
        except (HandshakeError, ConnectionClosed, trio.BrokenResourceError) as exc:
            await _close(ws, 4502, _reason(f"the session's server {owner} refused: {exc}"))
            nursery.cancel_scope.cancel()
            return
        async with trio.open_nursery() as pumps:
            pumps.start_soon(_owner_to_client, upstream, ws, pumps.cancel_scope)
            pumps.start_soon(_client_to_owner, ws, upstream, pumps.cancel_scope)
        nursery.cancel_scope.cancel()


async def _owner_to_client(
    upstream: WebSocketConnection, ws: WebSocket, scope: trio.CancelScope
) -> None:
    try:
        while True:
            message = await upstream.get_message()
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_text(message)
    except ConnectionClosed as closed:  # the owner closed: close the client the same way
        code, text = (closed.reason.code, closed.reason.reason) if closed.reason else (1005, "")
        # 1005, 1006 and 1015 name what happened but may not be sent in a close frame
        code = {1005: 1000, 1006: 1011, 1015: 1011}.get(code, code)
        await _close(ws, code, text or "")
    except (WebSocketDisconnect, RuntimeError):  # the client went first
        pass
    scope.cancel()


async def _client_to_owner(
    ws: WebSocket, upstream: WebSocketConnection, scope: trio.CancelScope
) -> None:
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            await upstream.send_message(data if data is not None else str(message.get("text")))
    except (WebSocketDisconnect, RuntimeError):
        pass
    except ConnectionClosed:  # the owner is closing: the other pump closes the client
        return
    with trio.move_on_after(_CLOSE_GRACE):  # the client left: close the owner's end too
        await upstream.aclose()
    scope.cancel()


def _reason(text: str) -> str:
    # a close reason is at most 123 bytes
    return json.dumps({"error": text, "code": "bad_gateway", "details": {}})[:120]


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client went first
        await ws.close(code=code, reason=reason)
