"""Two server processes on one PostgreSQL: each lists every session; a request for a session
the other runs is redirected to it (307); after its owner is killed (SIGKILL) and its lease has
run out, the session is lost, never shown as running. The console and events WebSockets of a
session asked of the server that does not run it are forwarded to the one that does."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import httpx
import psycopg
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from tests.peers.programs import build_program

from .conftest import Served, binary_until, create_key, owned_websocket, start_server, stop_server


def test_two_servers_share_sessions_redirect_and_lose_a_dead_owners(
    tmp_path: Path, postgres_url: str
) -> None:
    db = postgres_url  # a fresh database on the session's cluster (tests/peers/postgres.py)
    key = create_key(tmp_path / "a", "developer", "--db", db)
    a = start_server(tmp_path / "a", "--db", db, "--server-id", "a", "--lease", "2")
    b = start_server(tmp_path / "b", "--db", db, "--server-id", "b", "--lease", "2")
    try:
        headers = {"X-API-Key": key}
        with (
            httpx.Client(base_url=a.url, headers=headers, timeout=60) as on_a,
            httpx.Client(base_url=b.url, headers=headers, timeout=60) as on_b,
        ):
            made = on_a.post("/api/v1/sessions", json={"board": "lm3s6965evb"}).json()
            assert made["server"] == "a"
            listed = on_b.get("/api/v1/sessions").json()["items"]
            assert [s["id"] for s in listed] == [made["id"]]
            path = f"/api/v1/sessions/{made['id']}/debug/registers"
            moved = on_b.get(path, params={"names": "pc"})
            assert moved.status_code == 307
            assert moved.headers["location"] == f"{a.url}{path}?names=pc"
            assert moved.json()["details"]["server"] == "a"

            a.process.send_signal(signal.SIGKILL)
            a.process.wait()
            with psycopg.connect(db) as conn:
                row = conn.execute("SELECT expires_at FROM servers WHERE id = 'a'").fetchone()
            assert row is not None
            while time.time() <= row[0]:  # the lease's own expiry, not a guess
                time.sleep(0.2)
            seen = on_b.get(f"/api/v1/sessions/{made['id']}").json()
            assert seen["state"] == "lost"
            gone = on_b.get(path)
            assert gone.status_code == 409
            assert gone.json()["code"] == "session_not_running"
    finally:
        stop_server(a)
        assert stop_server(b) == 0


def _socket(
    served: Served, path: str, key: str
) -> contextlib.AbstractAsyncContextManager[WebSocketConnection]:
    """A WebSocket on ``served`` that owns its TCP stream (the server may close it first)."""
    return owned_websocket(served, f"{path}?api_key={key}")


async def _close_reason(ws: WebSocketConnection) -> tuple[int, str | None]:
    with trio.fail_after(60):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            reason = closed.reason
    assert reason is not None
    return reason.code, reason.reason


async def _gauge(client: httpx.AsyncClient, series: str, until: float | None = None) -> float:
    """The value of ``series`` in the server's /metrics; with ``until``, once it reads that
    (polled, within 30 s)."""
    with trio.fail_after(30):
        while True:
            lines = (await client.get("/metrics")).text.splitlines()
            values = [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(series)]
            value = values[0] if values else 0.0
            if until is None or value == until:
                return value
            await trio.sleep(0.05)


async def test_websockets_of_another_servers_session_are_forwarded_to_it(
    tmp_path: Path, postgres_url: str
) -> None:
    program = build_program("cortex-m3")
    db = postgres_url
    key = await trio.to_thread.run_sync(lambda: create_key(tmp_path / "a", "developer", "--db", db))
    a = await trio.to_thread.run_sync(
        lambda: start_server(tmp_path / "a", "--db", db, "--server-id", "a")
    )
    b = await trio.to_thread.run_sync(
        lambda: start_server(tmp_path / "b", "--db", db, "--server-id", "b")
    )
    try:
        async with (
            httpx.AsyncClient(base_url=a.url, headers={"X-API-Key": key}, timeout=60) as on_a,
            httpx.AsyncClient(base_url=b.url, headers={"X-API-Key": key}, timeout=60) as on_b,
        ):
            made = (await on_a.post("/api/v1/sessions", json={"board": "lm3s6965evb"})).json()
            s = f"/api/v1/sessions/{made['id']}"
            async with (
                _socket(b, f"{s}/console", key) as console,  # asked of b, run by a
                _socket(b, f"{s}/events", key) as events,
            ):
                hello = json.loads(await console.get_message())
                assert hello == {"type": "console", "session_id": made["id"], "read_only": False}
                assert json.loads(await events.get_message())["state"] == "running"
                upload = await on_a.post(f"{s}/programs", content=program.elf.read_bytes())
                started = await on_a.post(f"{s}/programs/{upload.json()['program_id']}/start")
                assert started.status_code == 200, started.text
                assert program.banner in await binary_until(console, program.banner)
                await console.send_message(b"typed-through-b")  # the owner's UART echoes it
                assert b"typed-through-b" in await binary_until(console, b"typed-through-b")
                with trio.fail_after(60):
                    while json.loads(await events.get_message())["type"] != "program":
                        pass
                # the client leaves b: b closes the console it opened on a, too
                console_on = 'virtrio_websockets_open{role="%s",stream="console"}'
                assert await _gauge(on_a, console_on % "served") == 1
                assert await _gauge(on_b, console_on % "forwarded") == 1
                await console.aclose()
                await _gauge(on_a, console_on % "served", until=0)
                await _gauge(on_b, console_on % "forwarded", until=0)
                # the session ends on a: the forwarded events socket is closed as a closes its own
                assert (await on_a.delete(s)).status_code == 204
                assert await _close_reason(events) == (1000, "the session ended")
    finally:
        await trio.to_thread.run_sync(stop_server, a)
        assert await trio.to_thread.run_sync(stop_server, b) == 0
