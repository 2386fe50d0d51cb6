"""The JavaScript yamux peer: @chainsafe/libp2p-yamux (js-libp2p's multiplexer, written apart
from hashicorp's and from ours), from the npm registry, pinned by
tests/peers/yamux_js/package-lock.json and installed by ``scripts/setup.sh`` (``npm ci``).
Started per test on loopback TCP or a Unix socket."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from . import INSTALL_HINT, require_program, stop_process

__all__ = ["JsFactory", "JsYamux", "js_yamux"]

FOLDER = Path(__file__).parent / "yamux_js"
LIBRARY = FOLDER / "node_modules" / "@chainsafe" / "libp2p-yamux"


@attrs.define
class JsYamux:
    """A running JS peer: ``address`` (a virtrio address) when it listens."""

    process: subprocess.Popen[bytes]
    address: str = ""

    def read_line(self) -> str:
        """The next line the peer prints on stdout (blocking)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().strip()

    def wait(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for a client-mode peer to exit; its status and remaining output."""
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out.decode()


JsFactory = Callable[..., JsYamux]


def _require_library() -> str:
    node = require_program("node", "nodejs")
    if not LIBRARY.is_dir():
        message = f"{LIBRARY} missing: npm ci --prefix {FOLDER} ({INSTALL_HINT})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
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
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        started.append(proc)
        peer = JsYamux(proc)
        if connect is None:
            line = peer.read_line()
            if not line.startswith("listening "):
                pytest.fail(f"JS yamux peer did not start: {line!r}")
            network, where = line.split(" ", 1)[1].split(":", 1)
            peer.address = f"tcp://{where}" if network == "tcp" else f"unix:{where}"
        return peer

    yield start
    for proc in started:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
