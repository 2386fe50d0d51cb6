"""The emulation-session server: what REST and WebSocket add on top of the backends.

One process runs the real server (:func:`virtrio.engine.server.serve`: Starlette on hypercorn's
Trio worker, SQLite store in a temp data dir, on 127.0.0.1 with a kernel-chosen port) and its
clients (httpx over a kept-alive HTTP/1.1 connection, trio-websocket), one request at a time,
so each REST row sits beside the same call made directly on the object the route calls:

* session create to running: ``POST /sessions`` (lm3s6965evb, answered 201 ``running``), then
  ``upload`` + ``start_program(halted)`` through REST (QEMU started, console, QMP, gdbstub);
* ``GET /sessions/{id}`` beside ``store.get_session`` (target: <= 1 ms added);
* a register read, ``GET /sessions/{id}/debug/registers``, beside ``instance.read_registers``
  on the same halted QEMU (target: <= 1 ms added);
* ``GET /sessions?limit=1000`` with 1000 sessions in the store (target: p50 < 50 ms);
* console WebSocket throughput to 1 and to 10 viewers: 4 KiB chunks fed into the session's
  console buffer (where the UART reader puts them) in batches, each batch waited for until
  every viewer has it; MiB/s of console bytes delivered to each viewer.

Run ``.venv/bin/python benchmarks/server.py``; medians with min..max (and p50/p90 for lists).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.programs import build_program  # noqa: E402
from virtrio.engine.backends import QemuInstance  # noqa: E402
from virtrio.engine.server import Role, ServerState, serve  # noqa: E402
from virtrio.engine.server._store import SessionRecord  # noqa: E402

N_CREATE = 5
N_GET = 500
N_REGS = 300
N_LIST = 50
N_LISTED = 1000
CHUNK = 4096
BATCH = 256  # chunks per batch: 1 MiB, well inside the console Fanout's 4096-item queue
BATCHES = 16  # 16 MiB per run


def row(name: str, samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return (
        f"{name:<52} median {statistics.median(ms):8.3f} ms  "
        f"(min {ms[0]:.3f}, p90 {p90:.3f}, max {ms[-1]:.3f}, n={len(ms)})"
    )


async def timed(operation: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await operation()
        samples.append(time.perf_counter() - start)
    return samples


async def create_rows(client: httpx.AsyncClient, elf: bytes) -> None:
    created, started = [], []
    for _ in range(N_CREATE):
        t0 = time.perf_counter()
        answer = await client.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
        assert answer.status_code == 201, answer.text
        session = answer.json()
        assert session["state"] == "running", session
        created.append(time.perf_counter() - t0)
        sid = session["id"]
        upload = await client.post(f"/api/v1/sessions/{sid}/programs", content=elf)
        assert upload.status_code == 201, upload.text
        pid = upload.json()["program_id"]
        start = await client.post(
            f"/api/v1/sessions/{sid}/programs/{pid}/start", json={"halted": True}
        )
        assert start.status_code == 200, start.text
        started.append(time.perf_counter() - t0)
        assert (await client.delete(f"/api/v1/sessions/{sid}")).status_code == 204
    print(row("POST /sessions -> 201 running", created))
    print(row("... + upload + start(halted): QEMU up", started))


async def halted_session(client: httpx.AsyncClient, elf: bytes) -> str:
    answer = await client.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
    sid: str = answer.json()["id"]
    pid = (await client.post(f"/api/v1/sessions/{sid}/programs", content=elf)).json()
    await client.post(
        f"/api/v1/sessions/{sid}/programs/{pid['program_id']}/start", json={"halted": True}
    )
    return sid


async def call_rows(client: httpx.AsyncClient, state: ServerState, sid: str) -> None:
    live = state.manager.live[sid]

    async def rest_get() -> None:
        assert (await client.get(f"/api/v1/sessions/{sid}")).status_code == 200

    async def direct_get() -> None:
        assert await state.store.get_session(sid) is not None

    async def rest_regs() -> None:
        assert (await client.get(f"/api/v1/sessions/{sid}/debug/registers")).status_code == 200

    async def direct_regs() -> None:
        await live.instance.read_registers(None)

    for name, rest, direct, what, n in (
        ("GET /sessions/{id}", rest_get, direct_get, "store.get_session", N_GET),
        ("GET /sessions/{id}/debug/registers", rest_regs, direct_regs, "read_registers", N_REGS),
    ):
        await timed(rest, 20)  # warm up both paths
        await timed(direct, 20)
        via_rest, via_direct = [], []
        for _ in range(n):  # interleaved, so drift and load hit both alike
            via_rest += await timed(rest, 1)
            via_direct += await timed(direct, 1)
        print(row(f"{name} via REST", via_rest))
        print(row(f"  same call direct ({what})", via_direct))
        added = (statistics.median(via_rest) - statistics.median(via_direct)) * 1000
        print(f"  {'added by REST (median difference)':<50} {added:8.3f} ms")


async def list_rows(client: httpx.AsyncClient, state: ServerState) -> None:
    now = time.time()
    for i in range(N_LISTED):
        await state.store.add_session(
            SessionRecord(
                id=f"s-bench{i:06d}",
                owner="bench",
                backend="qemu",
                board={"name": "lm3s6965evb"},
                resources={},
                state="stopped",
                created_at=now + i * 1e-3,
                updated_at=now + i * 1e-3,
                server=state.server_id,
            )
        )

    async def listing() -> None:
        answer = await client.get("/api/v1/sessions", params={"limit": N_LISTED})
        assert answer.status_code == 200
        assert len(answer.json()["items"]) >= N_LISTED

    await timed(listing, 3)
    samples = await timed(listing, N_LIST)
    print(row(f"GET /sessions?limit={N_LISTED} ({N_LISTED}+ stored)", samples))


class Viewers:
    """Bytes each viewer has received (absolute console offsets) and an event for catching up."""

    def __init__(self, n: int) -> None:
        self.received = [0] * n
        self.target = 0
        self.caught_up = trio.Event()

    def expect(self, target: int) -> None:
        self.target = target
        self.caught_up = trio.Event()
        if min(self.received) >= target:
            self.caught_up.set()

    async def read(self, i: int, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            try:
                message = await ws.get_message()
            except trio_websocket.ConnectionClosed:
                return
            self.received[i] += len(message)
            if min(self.received) >= self.target:
                self.caught_up.set()


async def console_rows(
    client: httpx.AsyncClient, elf: bytes, url: str, key: str, state: ServerState
) -> None:
    chunk = b"x" * (CHUNK - 1) + b"\n"
    for n in (1, 10):
        # a session of its own per run: a viewer's first binary frame is the whole history
        sid = await halted_session(client, elf)
        instance = state.manager.live[sid].instance
        assert isinstance(instance, QemuInstance)
        console = instance.console
        console.feed(b"benchmark\n")  # so every viewer's history frame is not empty
        path = f"/api/v1/sessions/{sid}/console?api_key={key}"
        ws_url = url.replace("http://", "ws://") + path
        viewers = Viewers(n)
        async with trio.open_nursery() as nursery:
            sockets = []
            for i in range(n):
                with trio.fail_after(30):
                    ws = await trio_websocket.connect_websocket_url(
                        nursery, ws_url, max_message_size=1 << 26
                    )
                    sockets.append(ws)
                    hello = await ws.get_message()  # {"type": "console", ...}
                    assert isinstance(hello, str), hello
                    # then the history (everything so far): counting starts from its end
                    viewers.received[i] = len(await ws.get_message())
            base = len(console.output())
            for i, ws in enumerate(sockets):
                nursery.start_soon(viewers.read, i, ws)
            start = time.perf_counter()
            for _ in range(BATCHES):
                for _ in range(BATCH):
                    console.feed(chunk)
                viewers.expect(len(console.output()))
                with trio.fail_after(60):
                    await viewers.caught_up.wait()
            elapsed = time.perf_counter() - start
            total = len(console.output()) - base
            for ws in sockets:
                await ws.aclose()
            nursery.cancel_scope.cancel()
        assert (await client.delete(f"/api/v1/sessions/{sid}")).status_code == 204
        mib = total / (1 << 20)
        print(
            f"console WebSocket, {n:>2} viewer(s): {mib:.0f} MiB to each in "
            f"{elapsed * 1000:.0f} ms = {mib / elapsed:7.1f} MiB/s per viewer, "
            f"{mib * n / elapsed:7.1f} MiB/s total"
        )


async def main() -> None:
    elf = build_program("cortex-m3").elf.read_bytes()
    with tempfile.TemporaryDirectory(prefix="virtrio-bench-server-") as tmp:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            url, state = await nursery.start(
                lambda task_status: serve(
                    Path(tmp),
                    listen="tcp://127.0.0.1:0",
                    shutdown=stop,
                    rate=1e9,
                    burst=10**9,
                    task_status=task_status,
                )
            )
            _, key = await state.auth.create_key(Role.DEVELOPER, "bench")
            async with httpx.AsyncClient(
                base_url=url, headers={"X-API-Key": key}, timeout=120
            ) as client:
                print(f"server on {url}, SQLite store, one client, requests one at a time")
                await create_rows(client, elf)
                sid = await halted_session(client, elf)
                await call_rows(client, state, sid)
                await console_rows(client, elf, url, key, state)
                await list_rows(client, state)
            stop.set()


if __name__ == "__main__":
    trio.run(main)
