"""Hostile in-process peers for the JSON RPC clients: a Unix socket server that runs a script
against each connection (malformed replies, stale garbage), for the cases no real peer sends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from virtrio.channels import open_listeners

__all__ = ["LineStream", "serve_hostile"]


class LineStream:
    """A server's view of one client connection: read the client's JSON lines, write bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def read_request(self) -> dict[str, Any]:
        """The client's next request (a leading 0xFF resynchronisation byte is dropped)."""
        while b"\n" not in self._buffer:
            data = await self.stream.receive_some()
            assert data, "the client closed the connection"
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        request: dict[str, Any] = json.loads(line.lstrip(b"\xff"))
        return request

    async def send(self, data: bytes) -> None:
        """Write raw bytes."""
        await self.stream.send_all(data)

    async def reply(self, value: Any, ident: Any, *, prefix: bytes = b"") -> None:
        """Write ``{"return": value, "id": ident}`` as one line."""
        await self.send(prefix + json.dumps({"return": value, "id": ident}).encode() + b"\n")


@asynccontextmanager
async def serve_hostile(
    tmp_path: Path, script: Callable[[LineStream], Awaitable[None]]
) -> AsyncIterator[str]:
    """Serve ``script`` on a Unix socket in ``tmp_path``; yields its address."""
    address = f"unix:{tmp_path / 'hostile.sock'}"
    listeners = await open_listeners(address)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await script(LineStream(stream))
            await trio.sleep_forever()  # the client decides when the connection ends

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield address
        nursery.cancel_scope.cancel()
