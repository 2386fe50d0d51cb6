"""``virtrio fleet``: check, up (a live table until SIGINT, then a clean shutdown) and status."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.engine.test_engine import BARE_FLEET, alive
from virtrio.engine._cli import main


def test_check_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text(
        "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n      c: {kind: x}\n"
    )
    assert main(["fleet", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:5: vms[0].channels.c.kind: unknown channel kind 'x'" in out
    assert out.endswith("1 problem(s)\n")
    good = tmp_path / "good.yaml"
    good.write_text(BARE_FLEET)
    assert main(["fleet", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok: 0 hosts, 2 VMs, 2 channels\n"


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    """What the pty printed up to ``needle`` (select with a deadline: no sleeps)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not printed within {timeout} s: {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the child closed the pty
                break
    return seen


def qemu_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_up_shows_the_fleet_live_and_stops_cleanly_on_sigint(
    qemu_binary: str, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(BARE_FLEET)
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "virtrio", "fleet", "up", str(fleet)],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    try:
        seen = read_until(leader, b"2 connected", timeout=60)
        assert b"qmp (qmp): " in seen
        children = qemu_children(process.pid)
        assert len(children) == 2
        process.send_signal(signal.SIGINT)
        seen += read_until(leader, b"fleet stopped", timeout=30)
        assert process.wait(timeout=30) == 0
        assert b"SIGINT: shutting the fleet down" in seen
        assert b"Traceback" not in seen
        assert not any(alive(pid) for pid in children)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_status_prints_the_table_once(
    qemu_binary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(BARE_FLEET)
    assert main(["fleet", "status", str(fleet), "--wait", "60"]) == 0
    out = capsys.readouterr().out
    assert "2 connected" in out
    assert out.count("qmp (qmp): connected") == 2
