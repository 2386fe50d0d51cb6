"""The emulation-session server (issue 15): what the REST layer adds over the backend.

One ``virtrio serve`` app in this process (hypercorn's Trio worker on 127.0.0.1, SQLite in a
temp dir), one httpx client with a developer key, the cortex-m3 test program on lm3s6965evb:

* session create to running: POST /sessions, upload the ELF, start it (halted), continue to
  the first ``tick`` breakpoint;
* GET /sessions/{id};
* a register read (``pc``) through REST beside the same call on the backend instance directly
  (target: at most 1 ms added). These two are timed with a minimal keep-alive HTTP/1.1 client
  (a GET written whole, the response read to its Content-Length, a new connection when the
  server closes one: after 5 s idle), so the figure is what the server adds; httpx's own
  cost (about 1 ms a request here) is shown beside them;
* listing 1000 sessions (GET /sessions?limit=1000; target p50 < 50 ms).

Each row: median and p90 of N, best of ROUNDS rounds. Run: ``.venv/bin/python
benchmarks/server.py``. Not measured yet: console WebSocket throughput with 1 and 10 viewers.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._served import served, session_at_breakpoint  # noqa: E402
from tests.peers.programs import build_program  # noqa: E402
from virtrio.engine.server._store import SessionRecord  # noqa: E402

ROUNDS = 3


class _KeepAlive:
    """The least an HTTP/1.1 client does: a keep-alive connection (a new one when the server
    closes it), a GET written whole, the response read to its Content-Length."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._address = (host, port)
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._stream: trio.SocketStream | None = None
        self._buffer = b""

    async def get(self, path: str) -> tuple[int, bytes]:
        """``GET path``: the status and the body."""
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n{self._headers}\r\n".encode()
        for _ in range(2):  # once more on a fresh connection if the server closed this one
            if self._stream is None:
                self._stream = await trio.open_tcp_stream(*self._address)
                self._buffer = b""
            try:
                await self._stream.send_all(request)
                return await self._response()
            except (EOFError, trio.BrokenResourceError):
                await self.aclose()
        raise EOFError("the server closed two connections in a row")

    async def _response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self._buffer:
            await self._fill()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = {k.strip().lower(): v.strip() for k, v in (f.split(b":", 1) for f in lines[1:])}
        length = int(fields[b"content-length"])
        self._buffer = rest
        while len(self._buffer) < length:
            await self._fill()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        if fields.get(b"connection", b"").lower() == b"close":
            await self.aclose()
        return int(lines[0].split(b" ")[1]), body

    async def _fill(self) -> None:
        assert self._stream is not None
        data = await self._stream.receive_some(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self._buffer += data

    async def aclose(self) -> None:
        """Close the connection (the next GET opens another)."""
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()


async def _time(n: int, call: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    best: tuple[float, float] | None = None
    for _ in range(ROUNDS):
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - start)
        samples.sort()
        row = (statistics.median(samples), samples[int(len(samples) * 0.9)])
        best = row if best is None or row[0] < best[0] else best
    assert best is not None
    return best


def _row(name: str, n: int, row: tuple[float, float]) -> None:
    print(f"{name:<34} n={n:<5} median {row[0] * 1e3:8.3f} ms   p90 {row[1] * 1e3:8.3f} ms")


async def main() -> None:
    program = build_program("cortex-m3")
    async with served() as (url, state, key):
        headers = {"X-API-Key": key}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as api:
            created: list[str] = []

            async def create_one() -> None:
                created.append(await session_at_breakpoint(api, program))

            _row("session create to running", 5, await _time(5, create_one))
            for session_id in created[1:]:
                await api.delete(f"/api/v1/sessions/{session_id}")
            sid = created[0]
            instance = state.manager.live[sid].instance

            host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
            lean = _KeepAlive(host, int(port), headers)

            async def get_session() -> None:
                assert (await lean.get(f"/api/v1/sessions/{sid}"))[0] == 200

            async def get_session_httpx() -> None:
                assert (await api.get(f"/api/v1/sessions/{sid}")).status_code == 200

            async def rest_pc() -> None:
                status, _ = await lean.get(f"/api/v1/sessions/{sid}/debug/registers?names=pc")
                assert status == 200

            async def rest_pc_httpx() -> None:
                answer = await api.get(f"/api/v1/sessions/{sid}/debug/registers?names=pc")
                assert answer.status_code == 200

            async def direct_pc() -> None:
                await instance.read_registers(["pc"])

            _row("GET /sessions/{id}", 300, await _time(300, get_session))
            _row("GET /sessions/{id}, httpx client", 300, await _time(300, get_session_httpx))
            _row("register read, REST, httpx client", 300, await _time(300, rest_pc_httpx))
            rest = await _time(300, rest_pc)
            direct = await _time(300, direct_pc)
            _row("register read, REST", 300, rest)
            _row("register read, backend directly", 300, direct)
            print(f"{'  REST adds (median)':<34} {(rest[0] - direct[0]) * 1e3:8.3f} ms")
            await lean.aclose()
            now = time.time()
            for n in range(1000):
                await state.store.add_session(SessionRecord(
                    id=f"s-bench{n:04d}", owner="bench", backend="qemu", board={"name": "pc"},
                    resources={}, state="stopped", created_at=now + n, updated_at=now + n,
                    server="bench",
                ))  # fmt: skip

            async def list_1000() -> None:
                page = (await api.get("/api/v1/sessions?limit=1000")).json()
                assert len(page["items"]) == 1000

            _row("GET /sessions?limit=1000", 30, await _time(30, list_1000))


if __name__ == "__main__":
    trio.run(main)
