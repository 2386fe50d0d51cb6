"""The Go yamux peer (hashicorp/yamux, as Debian packages it): built from
virtrio/engine/guest_files/yamux_peer
on first use (offline, GOPATH mode) and started per test on loopback TCP or a Unix socket."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import PeerProcess, peer_missing, require_program, start_peer, stop_peers

__all__ = ["GoYamux", "build_go_peer", "go_yamux"]

#: The source lives in the package: the demo guest carries a static build of it too.
SOURCE = Path(__file__).parents[2] / "virtrio" / "engine" / "guest_files" / "yamux_peer" / "main.go"
BINARY = Path(__file__).parent / "bin" / "yamux_peer"
GOPATH = "/usr/share/gocode"
LIBRARY = f"{GOPATH}/src/github.com/hashicorp/yamux"


def build_go_peer() -> str:
    """Build the Go peer unless the binary is newer than its source; returns its path."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return str(BINARY)
    go = require_program("go", "golang-go")
    if not os.path.isdir(LIBRARY):
        peer_missing(f"{LIBRARY} missing: apt-get install golang-github-hashicorp-yamux-dev")
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


#: A running Go peer.
GoYamux = PeerProcess


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
        return start_peer(argv, started, listens=connect is None)

    yield start
    stop_peers(started)
