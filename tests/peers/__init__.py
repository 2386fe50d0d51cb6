"""Fixtures that start real peers (QEMU, qemu-ga, libvirt, Go yamux, Spice, ...).

Each module here is loaded as a pytest plugin by ``tests/conftest.py`` (no list to edit). Every
fixture starts its peer on a Unix socket or loopback in the test's temp dir and always stops it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Sequence
from typing import NoReturn

import attrs
import pytest
import trio

from virtrio.engine._child import die_with_parent

__all__ = [
    "PeerProcess",
    "dies_with_tests",
    "echo_through",
    "free_tcp_address",
    "peer_missing",
    "require_program",
    "start_peer",
    "stop_peers",
    "stop_process",
]

#: The README's one-line install, named in every "peer missing" message.
INSTALL_HINT = "run `make test` (or `bash scripts/setup.sh`) to install the peers"


def require_program(name: str, package: str) -> str:
    """The path of program ``name``; a missing peer fails in CI and skips locally with a hint."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        peer_missing(f"{name} not found: apt-get install {package} ({INSTALL_HINT})")
    return path


def peer_missing(message: str) -> NoReturn:
    """A peer is not installed: fail loudly in CI (which installs every peer), skip locally
    with ``message``, which names the install command."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


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


@attrs.define
class PeerProcess:
    """A running line-printing peer program (the Go and JS yamux peers): ``address`` (a
    virtrio address) when it listens."""

    process: subprocess.Popen[bytes]
    address: str = ""

    def read_line(self) -> str:
        """The next line the peer prints (blocking; the peer prints only on events)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().strip()

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for a client-mode peer to exit; its status and remaining output."""
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out.decode()


def dies_with_tests(argv: Sequence[str]) -> list[str]:
    """``argv`` run so the peer gets SIGKILL when the test process dies: a crashed or killed
    pytest leaves no QEMU, daemon or database loading the machine.

    Only from the main thread (where pytest and pytest-trio run): the death signal follows the
    thread that forked, and a worker thread (``trio.to_thread``) may exit while its peer is
    still in use; such a start goes unwrapped.
    """
    if threading.current_thread() is not threading.main_thread():
        return list(argv)
    return die_with_parent(list(argv))


def start_peer(
    argv: list[str], started: list[subprocess.Popen[bytes]], *, listens: bool
) -> PeerProcess:
    """Start ``argv`` (recorded in ``started`` for :func:`stop_peers`); a listening peer must
    first print ``listening tcp:HOST:PORT`` or ``listening unix:PATH``."""
    proc = subprocess.Popen(dies_with_tests(argv), stdout=subprocess.PIPE)
    started.append(proc)
    peer = PeerProcess(proc)
    if listens:
        line = peer.read_line()
        if not line.startswith("listening "):
            pytest.fail(f"{argv[0]} peer did not start: {line!r}")
        network, where = line.split(" ", 1)[1].split(":", 1)
        peer.address = f"tcp://{where}" if network == "tcp" else f"unix:{where}"
    return peer


def stop_peers(started: list[subprocess.Popen[bytes]]) -> None:
    """Stop and reap every peer :func:`start_peer` started."""
    for proc in started:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def free_tcp_address() -> str:
    """A ``tcp://127.0.0.1:PORT`` address free right now, for a peer started on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


async def echo_through(stream: trio.abc.HalfCloseableStream, payload: bytes) -> bytes:
    """Send ``payload`` to an echoing peer, half-close, and return all it sent back."""
    await stream.send_all(payload)
    await stream.send_eof()
    out = b""
    while chunk := await stream.receive_some():
        out += chunk
    return out
