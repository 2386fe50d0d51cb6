"""Tools of the fault matrix: a hostile in-process server, a reset, a peak-RSS meter, and
timing of how fast pending calls fail."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing

from virtrio.channels import open_listeners
from virtrio.errors import ConnectionLostError

__all__ = ["LOSS_BOUND", "MIB", "PeakRss", "hostile_server", "pending_calls_fail_fast", "reset"]

MIB = 1024 * 1024

Handler = Callable[[trio.SocketStream], Awaitable[None]]


@asynccontextmanager
async def hostile_server(
    handler: Handler, address: str = "tcp://127.0.0.1:0"
) -> AsyncIterator[str]:
    """Serve ``handler`` on ``address`` (a free loopback port by default); yields the address
    to dial. The server and every handler are cancelled when the block exits."""
    listeners = await open_listeners(address)
    if address.startswith("tcp"):
        host, port = listeners[0].socket.getsockname()[:2]
        address = f"tcp://{host}:{port}"

    async def guarded(stream: trio.SocketStream) -> None:
        # the client going away first is the fault under test, not the server's
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await handler(stream)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, guarded, listeners)
        try:
            yield address
        finally:
            nursery.cancel_scope.cancel()


async def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` (a child of this process) and return once it has stopped: the signal is
    asynchronous, and a process running on the other CPU goes on for a moment (answering what
    it was about to). The stop stays to be reaped by the process's ``wait()`` (``WNOWAIT``)."""
    os.kill(pid, signal.SIGSTOP)
    await trio.to_thread.run_sync(os.waitid, os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)


def reset(stream: trio.SocketStream) -> None:
    """Abort a TCP connection: the peer sees ECONNRESET (an RST), not an orderly end."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


class PeakRss:
    """The growth of this process's peak resident memory over a block: resets the kernel's
    high-water mark (``/proc/self/clear_refs``) on enter, reads ``VmHWM`` on exit."""

    growth: int = 0

    def __enter__(self) -> PeakRss:
        Path("/proc/self/clear_refs").write_text("5")
        self._start = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = (_status_kib("VmHWM") - self._start) * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


#: The issue's bound: every pending call fails this soon after its peer is killed.
LOSS_BOUND = 0.1


async def pending_calls_fail_fast(
    call: Callable[[], Awaitable[object]],
    kill: Callable[[], None],
    *,
    calls: int,
    in_flight: Callable[[], int] | None = None,
    expected: type[BaseException] = ConnectionLostError,
) -> list[BaseException]:
    """Start ``calls`` copies of ``call``, wait until every one is blocked (and, with
    ``in_flight``, until the client counts them all as written), ``kill`` the peer, and check
    that every call failed with ``expected`` within :data:`LOSS_BOUND` of the kill, on Trio's
    clock. Returns the errors."""
    errors: list[BaseException] = []
    failed_at: list[float] = []

    async def one() -> None:
        try:
            await call()
        except (Exception, trio.EndOfChannel) as exc:
            errors.append(exc)
            failed_at.append(trio.current_time())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(calls):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            if in_flight is not None:
                assert in_flight() == calls, "not every call was in flight before the kill"
            assert errors == [], errors
            killed_at = trio.current_time()
            kill()
    assert len(errors) == calls
    assert all(isinstance(e, expected) for e in errors), errors
    slowest = max(failed_at) - killed_at
    assert slowest <= LOSS_BOUND, (
        f"the last pending call failed {slowest * 1000:.0f} ms after the kill"
    )
    return errors
