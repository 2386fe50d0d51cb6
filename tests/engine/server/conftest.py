"""Fixtures of the server tests: one real ``virtrio serve`` process for the server tests (on
127.0.0.1, a port the kernel picks, its data dir in a temp dir) with an admin, a developer
and a viewer key. PostgreSQL comes from tests/peers/postgres.py (``postgres_url``)."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from tests.peers import dies_with_tests

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@attrs.define
class Served:
    """A running server: its URL, data dir, process and one key per role."""

    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    keys: dict[str, str] = attrs.field(factory=dict)
    clients: dict[str | None, httpx.Client] = attrs.field(factory=dict)

    @contextlib.contextmanager
    def client(self, role: str | None = "admin") -> Iterator[httpx.Client]:
        """The client sending ``role``'s key (None: no credentials), kept for the module
        (making an httpx client builds an SSL context: tens of milliseconds)."""
        if role not in self.clients:
            headers = {"X-API-Key": self.keys[role]} if role is not None else {}
            # no kept-alive connections: the leak check (tests/leaks.py) would see a socket
            # the pool kept open after the test that made it
            self.clients[role] = httpx.Client(
                base_url=self.url,
                headers=headers,
                timeout=60,
                limits=httpx.Limits(max_keepalive_connections=0),
            )
        yield self.clients[role]

    def close(self) -> None:
        """Close the clients."""
        for client in self.clients.values():
            client.close()


def start_server(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Served:
    """Start ``virtrio serve`` and wait for the line naming its URL."""
    process = subprocess.Popen(
        dies_with_tests(
            [
                sys.executable,
                "-m",
                "virtrio",
                "serve",
                "--data-dir",
                str(data_dir),
                "--listen",
                "tcp://127.0.0.1:0",
                *extra,
            ]
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:  # ends when the process does: no wait without an end
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found:
            return Served(found.group(1), data_dir, process)
    process.wait()
    pytest.fail(f"virtrio serve exited with {process.returncode} before listening")


def create_key(data_dir: Path, role: str, *extra: str) -> str:
    """``virtrio serve keys create --role ROLE``: the key it prints."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "virtrio",
            "serve",
            "keys",
            "create",
            "--role",
            role,
            "--data-dir",
            str(data_dir),
            *extra,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def stop_server(served: Served) -> int:
    """SIGTERM (a graceful shutdown) and reap; returns the exit status."""
    if served.process.poll() is None:
        served.process.send_signal(signal.SIGTERM)
        try:
            served.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            served.process.kill()
            served.process.wait()
    assert served.process.stdout is not None
    served.process.stdout.close()
    return served.process.returncode


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the server tests (each works on sessions of its own), with keys for
    admin, developer, developer2 and viewer."""
    data_dir = tmp_path_factory.mktemp("server")
    admin = create_key(data_dir, "admin")
    server = start_server(data_dir, "--rate", "100000", "--burst", "100000")
    try:
        server.keys["admin"] = admin
        with server.client() as client:
            for name, role in (
                ("developer", "developer"),
                ("developer2", "developer"),
                ("viewer", "viewer"),
            ):
                answer = client.post("/api/v1/keys", json={"role": role, "name": name})
                assert answer.status_code == 201, answer.text
                server.keys[name] = answer.json()["key"]
        yield server
    finally:
        server.close()
        assert stop_server(server) == 0


@contextlib.asynccontextmanager
async def owned_websocket(served: Served, resource: str) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket on ``served`` at ``resource`` (path and query) that owns its TCP stream:
    trio-websocket's client waits for the server's TCP close (RFC 6455), which may come after
    the block when the server closes first; this closes the stream itself."""
    host, port = served.url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream, trio.open_nursery() as nursery:
        yield await wrap_client_stream(nursery, stream, host, resource)
        nursery.cancel_scope.cancel()


async def binary_until(ws: WebSocketConnection, text: bytes, timeout: float = 60) -> bytes:
    """The binary frames of ``ws`` joined, read until ``text`` is among them."""
    seen = b""
    with trio.fail_after(timeout):
        while text not in seen:
            message = await ws.get_message()
            if isinstance(message, bytes):
                seen += message
    return seen
