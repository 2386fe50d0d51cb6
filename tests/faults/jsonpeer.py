"""A hostile JSON-lines peer (QMP's or the guest agent's wire) for the fault matrix."""

from __future__ import annotations

import json
from typing import Any

import trio

__all__ = ["GREETING", "JsonLines"]

GREETING = {
    "QMP": {
        "version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": "hostile"},
        "capabilities": ["oob"],
    }
}


class JsonLines:
    """Reads JSON objects (one per line, a leading 0xFF skipped) and writes them."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()

    async def receive(self) -> dict[str, Any]:
        """The next object from the client."""
        while b"\n" not in self._buffer:
            data = await self.stream.receive_some(65536)
            if not data:
                raise trio.EndOfChannel
            self._buffer += data
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        result: dict[str, Any] = json.loads(line.lstrip(b"\xff"))
        return result

    async def send(self, message: dict[str, Any]) -> None:
        """Write one object and a newline."""
        await self.stream.send_all(json.dumps(message).encode() + b"\r\n")

    async def reply(self, request: dict[str, Any], value: Any = None) -> None:
        """Answer ``request`` with ``value`` (an empty object by default)."""
        await self.send({"return": {} if value is None else value, "id": request.get("id")})

    async def qmp_handshake(self) -> None:
        """Greet and answer ``qmp_capabilities``, as QEMU does."""
        await self.send(GREETING)
        await self.reply(await self.receive())

    async def qga_handshake(self) -> None:
        """Answer the client's first ``guest-sync-delimited`` as qemu-ga does (0xFF first)."""
        request = await self.receive()
        await self.stream.send_all(b"\xff")
        await self.reply(request, request["arguments"]["id"])
