"""The JavaScript yamux peer: @chainsafe/libp2p-yamux (js-libp2p's multiplexer, written apart
from hashicorp's and from ours), from the npm registry, pinned by
tests/peers/yamux_js/package-lock.json and installed by ``scripts/setup.sh`` (``npm ci``).
Started per test on loopback TCP or a Unix socket."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from . import INSTALL_HINT, PeerProcess, peer_missing, require_program, start_peer, stop_peers

__all__ = ["JsFactory", "JsYamux", "js_yamux"]

FOLDER = Path(__file__).parent / "yamux_js"
LIBRARY = FOLDER / "node_modules" / "@chainsafe" / "libp2p-yamux"


#: A running JS peer.
JsYamux = PeerProcess


JsFactory = Callable[..., JsYamux]


def _require_library() -> str:
    node = require_program("node", "nodejs")
    if not LIBRARY.is_dir():
        peer_missing(f"{LIBRARY} missing: npm ci --prefix {FOLDER} ({INSTALL_HINT})")
    return node


@pytest.fixture
def js_yamux(tmp_path: Path) -> Iterator[JsFactory]:
    """Start JS peers: ``js_yamux("echo", transport="unix")`` listens and returns its address;
    ``js_yamux("echo", connect=ADDRESS, streams=10)`` runs a client. Extra keywords become
    options (``bytes=1024`` -> ``--bytes 1024``). All are stopped at teardown."""
    node = _require_library()
    started: list[subprocess.Popen[bytes]] = []

    def start(
        mode: str, *, transport: str = "tcp", connect: str | None = None, **options: object
    ) -> JsYamux:
        argv = [node, str(FOLDER / "peer.mjs"), "--mode", mode]
        for name, value in options.items():
            argv += [f"--{name}", str(value)]
        if connect is not None:
            argv += ["--connect", connect.replace("tcp://", "tcp:")]
        elif transport == "unix":
            argv += ["--listen", f"unix:{tmp_path / f'js-{len(started)}.sock'}"]
        else:
            argv += ["--listen", "tcp:127.0.0.1:0"]
        return start_peer(argv, started, listens=connect is None)

    yield start
    stop_peers(started)
