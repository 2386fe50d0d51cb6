"""Two server processes on one PostgreSQL: each lists every session; a request for a session
the other runs is redirected to it (307); after its owner is killed (SIGKILL) and its lease has
run out, the session is lost, never shown as running."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psycopg

from .conftest import create_key, start_server, stop_server


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
