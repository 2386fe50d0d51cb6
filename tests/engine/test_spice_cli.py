"""``virtrio spice`` against a real Spice server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from tests.peers.spice import SpiceVM, decode_png_rgb


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "virtrio", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, **(env or {})),
    )


async def test_screenshot_keys_and_password(spice_vm_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vm: SpiceVM = spice_vm_factory(password="pw1")
    out = tmp_path / "s.png"
    env = {"VIRTRIO_SPICE_PASSWORD": "pw1"}
    r = await trio.to_thread.run_sync(
        lambda: cli("spice", vm.address, "screenshot", "-o", str(out), env=env)
    )
    assert r.returncode == 0, r.stderr
    width, height, _ = decode_png_rgb(out.read_bytes())
    assert width > 0
    assert height > 0
    r = await trio.to_thread.run_sync(lambda: cli("spice", vm.address, "keys", "esc", env=env))
    assert r.returncode == 0, r.stderr
    r = await trio.to_thread.run_sync(lambda: cli("spice", vm.address, "type", "12", env=env))
    assert r.returncode == 0, r.stderr
    bad = {"VIRTRIO_SPICE_PASSWORD": "nope"}
    r = await trio.to_thread.run_sync(lambda: cli("spice", vm.address, "keys", "esc", env=bad))
    assert r.returncode == 1
    assert "password" in r.stderr
    assert "nope" not in r.stderr + r.stdout
    r = await trio.to_thread.run_sync(lambda: cli("spice", vm.address, "keys", "nokey", env=env))
    assert r.returncode == 1
    assert "unknown key name 'nokey'" in r.stderr
