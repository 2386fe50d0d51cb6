"""The server's console WebSocket: throughput to 1 and to 10 viewers (issue 15; the REST rows
are benchmarks/server.py).

One process runs the real server (:func:`virtrio.engine.server.serve`: hypercorn's Trio worker
on 127.0.0.1, SQLite in a temp dir) and its viewers (trio-websocket). For each run a new
lm3s6965evb session with the cortex-m3 test program halted (so QEMU writes nothing); 4 KiB
chunks are fed into the session's console buffer, where the UART reader puts them, in 1 MiB
batches, each waited for until every viewer has it: MiB/s of console bytes delivered to each
viewer and in total. Run ``.venv/bin/python benchmarks/server_console.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
import trio_websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers.programs import build_program  # noqa: E402
from virtrio.engine.backends import QemuInstance  # noqa: E402
from virtrio.engine.server import Role, ServerState, serve  # noqa: E402

CHUNK = 4096
BATCH = 256  # chunks per batch: 1 MiB, well inside the console Fanout's 4096-item queue
BATCHES = 16  # 16 MiB per run


async def halted_session(client: httpx.AsyncClient, elf: bytes) -> str:
    answer = await client.post("/api/v1/sessions", json={"board": "lm3s6965evb"})
    sid: str = answer.json()["id"]
    pid = (await client.post(f"/api/v1/sessions/{sid}/programs", content=elf)).json()
    await client.post(
        f"/api/v1/sessions/{sid}/programs/{pid['program_id']}/start", json={"halted": True}
    )
    return sid


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
                print(f"server on {url}, SQLite store")
                await console_rows(client, elf, url, key, state)
            stop.set()


if __name__ == "__main__":
    trio.run(main)
