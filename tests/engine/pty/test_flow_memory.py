"""The daemon's memory under a subscriber that never reads (issue 17): the per-subscriber queue
is bounded in bytes (max_queue_size chunks of 8 KiB), not in chunks of any size.

The daemon runs as its own process (``virtrio pty-daemon``) so its RSS can be read from
/proc/PID/status; the subscriber is a raw socket that attaches and then reads nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from virtrio.channels.pty import (
    NEED_DATA,
    Attach,
    BackpressureWarning,
    Detach,
    FrameDecoder,
    Level,
    Message,
    Ok,
    encode,
    open_pty_client,
)

MIB = 1024 * 1024
QUEUE_CHUNKS = 2048  # of 8 KiB: a 16 MiB bound per subscriber
FLOOD = 96 * MIB  # one round; a bound in chunks of the daemon's ~32 KiB reads would hold 64 MiB
#: Allocator and buffer slack over the queue's bound (the count-bounded queue grew ~64 MiB).
SLACK = 24 * MIB


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@asynccontextmanager
async def _daemon_process(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    folder = tmp_path / "pty"
    folder.mkdir(mode=0o700)
    socket_path = folder / "socket"
    command = [
        sys.executable, "-m", "virtrio", "pty-daemon", "--socket", str(socket_path),
        "--max-queue-size", str(QUEUE_CHUNKS), "--flow-threshold", str(QUEUE_CHUNKS // 4),
        "--scrollback-lines", "10",
    ]  # fmt: skip
    proc = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        with trio.fail_after(60):
            line = b""
            while b"\n" not in line:
                data = await proc.stdout.receive_some()
                assert data, f"the daemon exited ({await proc.wait()}) before listening"
                line += data
        assert b"listening on" in line
        yield proc.pid, socket_path
    finally:
        proc.terminate()
        with trio.move_on_after(10) as scope:
            scope.shield = True
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


class _RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.decoder = FrameDecoder()

    async def next(self) -> Message:
        while (message := self.decoder.next_message()) is NEED_DATA:
            data = await self.stream.receive_some(1 << 20)
            assert data, "the daemon closed the connection"
            self.decoder.receive_data(data)
        assert not isinstance(message, type(NEED_DATA))
        return message

    async def until(self, wanted: Message) -> list[Message]:
        seen = []
        while (message := await self.next()) != wanted:
            seen.append(message)
        return seen


async def _flood_past_a_subscriber_that_never_reads(
    socket_path: Path, sid: int, fifo: Path, go: Callable[[], Awaitable[None]]
) -> list[BackpressureWarning]:
    """One round: a raw subscriber attaches, the session prints FLOOD bytes, the subscriber
    reads nothing until it is done; then it reads to its red warning and detaches."""
    stream = await trio.open_unix_socket(str(socket_path))
    async with stream:
        raw = _RawClient(stream)
        await stream.send_all(encode(Attach(sid, id=1)))
        assert await raw.until(Ok(1)) == []
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                done = trio.Event()

                async def wait_done() -> None:
                    await trio.to_thread.run_sync(fifo.read_bytes, abandon_on_cancel=True)
                    done.set()

                nursery.start_soon(wait_done)
                await go()
                await done.wait()
        warnings: list[BackpressureWarning] = []
        with trio.fail_after(60):
            while not any(w.level is Level.RED for w in warnings):
                message = await raw.next()
                if isinstance(message, BackpressureWarning):
                    warnings.append(message)
            await stream.send_all(encode(Detach(sid, id=2)))
            await raw.until(Ok(2))  # detached: the daemon has dropped its queue
    return warnings


async def test_a_subscriber_that_never_reads_holds_a_bounded_number_of_bytes(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "done.fifo"
    os.mkfifo(fifo)
    script = f"while read go; do head -c {FLOOD} /dev/zero | tr '\\0' x; echo > {fifo}; done"
    async with (
        _daemon_process(tmp_path) as (pid, socket_path),
        open_pty_client(socket_path) as control,
    ):
        sid = await control.create(command="/bin/sh", args=["-c", script])
        before = _status_kib(pid, "VmRSS")

        async def go() -> None:
            await control.input(sid, "go\n")

        warnings = await _flood_past_a_subscriber_that_never_reads(socket_path, sid, fifo, go)
        first_peak = _status_kib(pid, "VmHWM")
        assert first_peak - before < QUEUE_CHUNKS * 8192 + SLACK, (
            f"the daemon grew by {(first_peak - before) / MIB:.0f} MiB for one subscriber"
        )
        # yellow, then red with what it lost, and never more than the bound queued
        assert [w.level for w in warnings] == [Level.YELLOW, Level.RED]
        assert warnings[1].dropped > 0
        assert all(w.queue_size <= QUEUE_CHUNKS for w in warnings)
        # the first subscriber is gone: a second one reuses its memory instead of adding
        # to it (a queue kept after its subscriber left would raise the peak by ~16 MiB)
        again = await _flood_past_a_subscriber_that_never_reads(socket_path, sid, fifo, go)
        assert [w.level for w in again] == [Level.YELLOW, Level.RED]
        second_peak = _status_kib(pid, "VmHWM")
        assert second_peak - first_peak < 8 * MIB
        assert _status_kib(pid, "VmRSS") - before < QUEUE_CHUNKS * 8192 + SLACK
