"""A child process forked by the Trio thread itself, for a death signal that lasts: every QEMU
the engine or the server starts dies with the process that started it, even a SIGKILLed one.

PR_SET_PDEATHSIG follows the *thread* that forked the child, not the process: a child started by
``trio.lowlevel.open_process`` is forked in a worker thread of Trio's cache, which exits after
10 s idle, and the kernel then kills the child. Forked here, in the thread that runs Trio (which
lives as long as the program), the signal comes only when the program dies.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from typing import IO, Any

import trio

__all__ = ["Child", "die_with_parent", "spawn_here"]


class Child:
    """A started child: the parts of :class:`trio.Process` the backends use."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._popen.pid

    @property
    def stdout(self) -> IO[bytes] | None:
        """The child's standard output, when started with ``stdout=subprocess.PIPE``."""
        return self._popen.stdout

    @property
    def returncode(self) -> int | None:
        """Its exit status once reaped (negative: the signal that ended it), else None."""
        return self._popen.poll()

    async def wait(self) -> int:
        """Wait for the child to exit, reap it and return its status."""
        if self._popen.poll() is None:
            pidfd = os.pidfd_open(self._popen.pid)
            try:
                await trio.lowlevel.wait_readable(pidfd)
            finally:
                trio.lowlevel.notify_closing(pidfd)
                os.close(pidfd)
        return self._popen.wait()

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless the child is already reaped."""
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


async def spawn_here(argv: Sequence[str], **options: Any) -> Child:
    """Start ``argv`` (``subprocess.Popen`` options) from the calling thread; a checkpoint.

    The fork and exec block the loop briefly (CPython uses vfork here: no ``preexec_fn``).
    """
    await trio.lowlevel.checkpoint()
    # the point is to fork in this thread, not in a worker (see the module docstring)
    return Child(subprocess.Popen(list(argv), **options))  # noqa: ASYNC220


def die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run through util-linux's ``setpriv --pdeathsig KILL``: the emulator gets
    SIGKILL when the process that started it dies (a SIGKILLed engine or server leaves no QEMU
    behind).

    Why a wrapper: ``preexec_fn`` runs Python between fork and exec, unsafe in a process with
    threads. setpriv calls prctl(PR_SET_PDEATHSIG) and execs the program (the same pid; the
    setting survives exec). The signal follows the *thread* that forked, so the child is forked
    by :func:`spawn_here` in Trio's own thread, which lives as long as the program.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:  # util-linux is essential on Debian; without it, no death signal
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]
