"""What the server benchmarks share: a server in a temp dir with a developer key, and a session
halted at the test program's breakpoint (``benchmarks/server.py``, ``server_cpu.py``)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from tests.peers.programs import BareMetalProgram
from virtrio.engine.server import Role, serve


@asynccontextmanager
async def served() -> AsyncIterator[tuple[str, Any, str]]:
    """``virtrio serve`` on 127.0.0.1 in a temp dir, no rate limit: its URL, its state and a
    developer's API key, until the block ends."""
    with tempfile.TemporaryDirectory() as folder:
        async with trio.open_nursery() as nursery:
            url, state = await nursery.start(
                lambda task_status: serve(
                    Path(folder), listen="tcp://127.0.0.1:0", rate=1e9, burst=10**9,
                    task_status=task_status,
                )
            )  # fmt: skip
            _, key = await state.auth.create_key(Role.DEVELOPER)
            yield url, state, key
            nursery.cancel_scope.cancel()


async def session_at_breakpoint(api: httpx.AsyncClient, program: BareMetalProgram) -> str:
    """Create a session, upload ``program``, break on ``tick``, start it halted and run to the
    breakpoint; the session's id."""
    made = (await api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})).json()
    s = f"/api/v1/sessions/{made['id']}"
    up = await api.post(f"{s}/programs", content=program.elf.read_bytes())
    await api.post(f"{s}/debug/breakpoints", json={"symbol": "tick"})
    pid = up.json()["program_id"]
    await api.post(f"{s}/programs/{pid}/start", json={"halted": True})
    stop = await api.post(f"{s}/debug/continue", json={"wait": True})
    assert stop.json()["pc"] == program.symbols["tick"], stop.text
    return str(made["id"])
