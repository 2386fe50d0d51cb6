"""No QEMU outlives the process that launched it: an engine (here ``open_qemu`` in a process of
its own) SIGKILLed while its QEMU runs, and still 15 s later (past the 10 s a Trio worker
thread lives idle: QEMU is forked in Trio's own thread, so its death signal is the process's,
not a worker's) leaves no QEMU behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import trio

SCRIPT = """
import sys, trio
from virtrio.engine.guest import QemuMachine, open_qemu

async def main() -> None:
    machine = QemuMachine(machine="none", agent=False, console_log=False)
    async with open_qemu(machine) as qemu:
        print(qemu.pid, flush=True)
        await trio.sleep_forever()

trio.run(main)
"""


async def _exited(pid: int, timeout: float) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        with trio.move_on_after(timeout):
            await trio.lowlevel.wait_readable(pidfd)
            return True
        return False
    finally:
        trio.lowlevel.notify_closing(pidfd)
        os.close(pidfd)


async def test_a_sigkilled_engine_leaves_no_qemu(qemu_binary: str) -> None:
    qemu_pid = None
    # (a plain Popen: the engine process is this test's to kill, whatever thread forks it)
    engine = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE)  # noqa: ASYNC220
    try:
        assert engine.stdout is not None
        line = await trio.to_thread.run_sync(engine.stdout.readline)
        qemu_pid = int(line)
        # still running once the worker thread that would have forked it is long gone
        assert not await _exited(qemu_pid, 15.0)
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        assert await _exited(qemu_pid, 10.0), "QEMU outlived the process that launched it"
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        if engine.stdout is not None:
            engine.stdout.close()
        if qemu_pid is not None:  # (a failing run must not leave it behind either)
            with contextlib.suppress(ProcessLookupError):
                os.kill(qemu_pid, signal.SIGKILL)
