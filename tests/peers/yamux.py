"""The Go yamux peer (hashicorp/yamux, as Debian packages it): built from tests/peers/yamux_peer
on first use (offline, GOPATH mode) and started per test on loopback TCP or a Unix socket."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from . import require_program, stop_process

__all__ = ["GoYamux", "build_go_peer", "go_yamux"]

SOURCE = Path(__file__).parent / "yamux_peer" / "main.go"
BINARY = Path(__file__).parent / "bin" / "yamux_peer"
GOPATH = "/usr/share/gocode"
LIBRARY = f"{GOPATH}/src/github.com/hashicorp/yamux"


def build_go_peer() -> str:
    """Build the Go peer unless the binary is newer than its source; returns its path."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(BINARY)
    go = require_program("go", "golang-go")
    if not os.path.isdir(LIBRARY):
        message = f"{LIBRARY} missing: apt-get install golang-github-hashicorp-yamux-dev"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    BINARY.parent.mkdir(exist_ok=True)
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH}
    env.setdefault("GOCACHE", str(BINARY.parent / ".gocache"))
    subprocess.run(
        [go, "build", "-o", str(BINARY), "."],
        cwd=SOURCE.parent,
        env=env,
        check=True,
        capture_output=True,
    )
    return str(BINARY)


@attrs.define
class GoYamux:
    """A running Go peer: ``address`` (a virtrio address) when it listens; ``lines()`` is what
    it printed so far."""

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


Factory = Callable[..., GoYamux]


@pytest.fixture
def go_yamux(tmp_path: Path) -> Iterator[Factory]:
    """Start Go peers: ``go_yamux("echo", transport="unix")`` listens and returns its address;
    ``go_yamux("echo", connect=ADDRESS, streams=10)`` runs a client. Extra keywords become
    flags (``bytes=1024`` -> ``-bytes 1024``). All are stopped at teardown."""
    binary = build_go_peer()
    started: list[subprocess.Popen[bytes]] = []

    def start(
        mode: str, *, transport: str = "tcp", connect: str | None = None, **flags: object
    ) -> GoYamux:
        argv = [binary, "-mode", mode]
        for name, value in flags.items():
            argv += [f"-{name.replace('_', '-')}", str(value)]
        if connect is not None:
            target = connect.replace("tcp://", "tcp:")
            argv += ["-connect", target]
        elif transport == "unix":
            argv += ["-listen", f"unix:{tmp_path / f'go-{len(started)}.sock'}"]
        else:
            argv += ["-listen", "tcp:127.0.0.1:0"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        started.append(proc)
        peer = GoYamux(proc)
        if connect is None:
            line = peer.read_line()
            if not line.startswith("listening "):
                pytest.fail(f"Go yamux peer did not start: {line!r}")
            network, where = line.split(" ", 1)[1].split(":", 1)
            peer.address = f"tcp://{where}" if network == "tcp" else f"unix:{where}"
        return peer

    yield start
    for proc in started:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
