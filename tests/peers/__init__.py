"""Fixtures that start real peers (QEMU, qemu-ga, libvirt, Go yamux, Spice, ...).

Each module here is loaded as a pytest plugin by ``tests/conftest.py`` (no list to edit). Every
fixture starts its peer on a Unix socket or loopback in the test's temp dir and always stops it.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

__all__ = ["require_program", "stop_process"]

#: The README's one-line install, named in every "peer missing" message.
INSTALL_HINT = "run `make test` (or `bash scripts/setup.sh`) to install the peers"


def require_program(name: str, package: str) -> str:
    """The path of program ``name``; a missing peer fails in CI and skips locally with a hint."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        message = f"{name} not found: apt-get install {package} ({INSTALL_HINT})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 3.0) -> None:
    """terminate, wait ``grace`` seconds, then kill — and always reap (qemu-ga can deadlock on
    SIGTERM, and PID 1 here does not reap orphans)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
