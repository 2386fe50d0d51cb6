"""What a server bounds about its sessions' processes: a SIGKILLed server leaves no emulator
behind (QEMU runs under ``setpriv --pdeathsig KILL``), and a key has at most
``--max-sessions-per-key`` live sessions (409 ``session_limit`` beyond)."""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

import httpx

from .conftest import create_key, start_server, stop_server


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_qemu_of_a_sigkilled_server_dies_with_it(tmp_path: Path) -> None:
    key = create_key(tmp_path, "developer")
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as api:
            made = api.post("/api/v1/sessions", json={"board": "lm3s6965evb"}).json()
            on = api.post(f"/api/v1/sessions/{made['id']}/power", json={"action": "on"})
            assert on.status_code == 200, on.text
        qemu = [
            pid
            for pid in _children(server.process.pid)
            if "qemu-system" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(qemu) == 1
        pidfd = os.pidfd_open(qemu[0])
        try:
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            # the pidfd is readable once QEMU has exited (an event, not a guessed delay)
            readable, _, _ = select.select([pidfd], [], [], 60)
            assert readable == [pidfd], "QEMU outlived the SIGKILLed server"
        finally:
            os.close(pidfd)
    finally:
        stop_server(server)


def test_a_key_beyond_its_session_limit_gets_a_409_naming_it(tmp_path: Path) -> None:
    key = create_key(tmp_path, "developer")
    server = start_server(tmp_path, "--max-sessions-per-key", "1")
    try:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=60) as api:
            first = api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
            assert first.status_code == 201, first.text
            refused = api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
            assert refused.status_code == 409
            body = refused.json()
            assert body["code"] == "session_limit"
            assert body["details"] == {"limit": 1, "running": 1}
            assert "--max-sessions-per-key" in body["error"]
            assert api.delete(f"/api/v1/sessions/{first.json()['id']}").status_code == 204
            again = api.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
            assert again.status_code == 201, again.text
    finally:
        assert stop_server(server) == 0
