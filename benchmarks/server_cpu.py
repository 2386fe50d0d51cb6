"""The server's CPU cost of one cheap request (issue 15), and hypercorn's own floor.

Where ``server.py`` times requests on the wall clock (noisy on a shared machine), this counts
the server process's CPU time (user + system, all its threads) over many keep-alive GETs sent
by a client in another process (blocking sockets, a GET written whole, the response read to
its Content-Length), so the figure is what the server spends per request:

* ``GET /sessions/{id}`` and the ``pc`` register read of a running cortex-m3 session;
* ``bare``: a "hello" ASGI app (no Starlette, no virtrio) on the same hypercorn Trio worker
  and configuration: the floor of hypercorn + h11 + Trio.

Run: ``.venv/bin/python benchmarks/server_cpu.py [N] [--rows bare,get,registers]
[--profile DIR] [--strace DIR] [--py-spy DIR]``, N requests a row (5000). ``--profile``: a
cProfile of the server's Trio thread for each row, in DIR/bare.prof, get.prof and
registers.prof; ``--strace``: ``strace -c`` of the server's threads, in DIR/<row>.txt;
``--py-spy``: py-spy's collapsed stacks, in DIR/<row>.txt (each slows the server down: the
CPU figures of such a run are not the server's).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._served import served, session_at_breakpoint  # noqa: E402
from tests.peers.programs import build_program  # noqa: E402
from virtrio.engine.server._app import hypercorn_config  # noqa: E402

#: the client: N keep-alive GETs of argv[3] on 127.0.0.1:argv[1] (a new connection when the
#: server closes one), the X-API-Key header argv[4]
CLIENT = r"""
import socket, sys
port, n, path, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nX-API-Key: {key}\r\n\r\n".encode()
sock, buffer = None, b""
for _ in range(n):
    if sock is None:
        sock, buffer = socket.create_connection(("127.0.0.1", port)), b""
    sock.sendall(request)
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    fields = dict(l.split(b": ", 1) for l in head.lower().split(b"\r\n")[1:])
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(fields[b"content-length"])
    while len(buffer) < length:
        buffer += sock.recv(65536)
    buffer = buffer[length:]
    if fields.get(b"connection") == b"close":
        sock.close()
        sock = None
"""


#: where ``--profile``, ``--strace`` and ``--py-spy`` write (None: not asked for)
PROFILE_DIR: Path | None = None
STRACE_DIR: Path | None = None
PYSPY_DIR: Path | None = None


async def _tracers(slug: str) -> list[trio.Process]:
    """``strace -c`` attached to every thread of this process (not the client's), and
    ``py-spy record`` (collapsed stacks), as asked for."""
    tracers = []
    if STRACE_DIR is not None:
        threads = [arg for tid in os.listdir("/proc/self/task") for arg in ("-p", tid)]
        out = STRACE_DIR / f"{slug}.txt"
        tracers.append(await trio.lowlevel.open_process(["strace", "-c", "-o", str(out), *threads]))
    if PYSPY_DIR is not None:
        py_spy = Path(sys.executable).parent / "py-spy"
        out = PYSPY_DIR / f"{slug}.txt"
        command = [str(py_spy), "record", "--pid", str(os.getpid()), "--format", "raw"]
        tracers.append(await trio.lowlevel.open_process([*command, "-r", "500", "-o", str(out)]))
    if tracers:
        await trio.sleep(1.5)  # attached (an untraced request or two do not matter)
    return tracers


async def _measure(name: str, slug: str, port: int, n: int, path: str, key: str) -> None:
    profile = cProfile.Profile() if PROFILE_DIR is not None else None
    tracers = await _tracers(slug)
    before, wall = os.times(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await trio.run_process([sys.executable, "-c", CLIENT, str(port), str(n), path, key])
    if profile is not None:
        profile.disable()
        assert PROFILE_DIR is not None
        profile.dump_stats(PROFILE_DIR / f"{slug}.prof")
    after, wall = os.times(), time.perf_counter() - wall
    for tracer in tracers:
        tracer.send_signal(signal.SIGINT)
        await tracer.wait()
    cpu = (after.user - before.user) + (after.system - before.system)
    print(
        f"{name:<24} n={n:<6} server CPU {cpu / n * 1e6:7.1f} µs/request"
        f"   wall {wall / n * 1e6:7.1f} µs/request"
    )


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":  # lifespan: startup, then shutdown
        while True:
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b'{"hello":"world"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"17")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _bare(n: int) -> None:
    from hypercorn.trio import serve as hypercorn_serve

    config = hypercorn_config("127.0.0.1:0")
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: hypercorn_serve(
                _hello,  # type: ignore[arg-type]
                config,
                shutdown_trigger=stop.wait,  # type: ignore[arg-type]
                task_status=task_status,
            )
        )
        port = int(binds[0].rsplit(":", 1)[1])
        await _measure("bare hypercorn hello", "bare", port, n, "/", "-")
        stop.set()


async def main(n: int, rows: set[str]) -> None:
    program = build_program("cortex-m3")
    if "bare" in rows:
        await _bare(n)
    if not rows & {"get", "registers"}:
        return
    async with served() as (url, _, key):
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}) as api:
            s = f"/api/v1/sessions/{await session_at_breakpoint(api, program)}"
        port = int(url.rsplit(":", 1)[1])
        if "get" in rows:
            await _measure("GET /sessions/{id}", "get", port, n, s, key)
        if "registers" in rows:
            registers = f"{s}/debug/registers?names=pc"
            await _measure("register read", "registers", port, n, registers, key)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=5000, help="requests a row")
    parser.add_argument("--rows", default="bare,get,registers", help="of bare,get,registers")
    parser.add_argument("--profile", type=Path, help="cProfiles in DIR/<row>.prof")
    parser.add_argument("--strace", type=Path, help="strace -c in DIR/<row>.txt")
    parser.add_argument("--py-spy", type=Path, help="py-spy's collapsed stacks in DIR/<row>.txt")
    options = parser.parse_args()
    PROFILE_DIR, STRACE_DIR, PYSPY_DIR = options.profile, options.strace, options.py_spy
    for folder in (PROFILE_DIR, STRACE_DIR, PYSPY_DIR):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    trio.run(main, options.n, set(options.rows.split(",")))
