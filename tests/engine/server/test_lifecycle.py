"""The server's life: a graceful shutdown (SIGTERM) stops every running session cleanly (its
QEMU quits and is reaped; the store says ``stopped``); a server killed with SIGKILL leaves its
sessions ``running`` in the store, and its next start marks them ``lost``; the per-key rate
limit answers 429 with Retry-After."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx

from tests.peers.programs import build_program

from .conftest import create_key, start_server, stop_server


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out |= {int(p) for p in text}
    return out


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _states(data_dir: Path) -> dict[str, str]:
    with sqlite3.connect(data_dir / "virtrio.db") as db:
        return dict(db.execute("SELECT id, state FROM sessions").fetchall())


def test_shutdown_stops_sessions_kill_marks_them_lost_and_rate_limit(tmp_path: Path) -> None:
    developer = create_key(tmp_path, "developer")
    viewer = create_key(tmp_path, "viewer")
    program = build_program("cortex-m3")
    served = start_server(tmp_path, "--rate", "0.01", "--burst", "3")
    try:
        dev = httpx.Client(base_url=served.url, headers={"X-API-Key": developer}, timeout=60)
        view = httpx.Client(base_url=served.url, headers={"X-API-Key": viewer}, timeout=60)
        with dev, view:
            made = dev.post("/api/v1/sessions", json={"board": "lm3s6965evb"}).json()
            s = f"/api/v1/sessions/{made['id']}"
            pid = dev.post(f"{s}/programs", content=program.elf.read_bytes()).json()["program_id"]
            assert dev.post(f"{s}/programs/{pid}/start").status_code == 200
            qemus = [p for p in _children(served.process.pid) if "qemu-system" in _exe(p)]
            assert len(qemus) == 1
            for _ in range(3):
                assert view.get("/api/v1/sessions").status_code == 200
            limited = view.get("/api/v1/sessions")
            assert limited.status_code == 429
            assert limited.json()["code"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
    finally:
        assert stop_server(served) == 0
    assert not _alive(qemus[0])
    assert _states(tmp_path) == {made["id"]: "stopped"}

    served = start_server(tmp_path)
    try:
        with httpx.Client(base_url=served.url, headers={"X-API-Key": developer}) as dev:
            second = dev.post("/api/v1/sessions", json={"board": "lm3s6965evb"}).json()
        served.process.send_signal(signal.SIGKILL)
        served.process.wait()
    finally:
        stop_server(served)
    assert _states(tmp_path)[second["id"]] == "running"  # nobody could say otherwise

    served = start_server(tmp_path)
    try:
        with httpx.Client(base_url=served.url, headers={"X-API-Key": developer}) as dev:
            seen = dev.get(f"/api/v1/sessions/{second['id']}").json()
            assert seen["state"] == "lost"
            gone = dev.post(f"/api/v1/sessions/{second['id']}/power", json={"action": "on"})
            assert gone.status_code == 409
            assert gone.json()["code"] == "session_not_running"
    finally:
        assert stop_server(served) == 0
