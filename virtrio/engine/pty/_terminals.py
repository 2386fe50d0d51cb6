"""The I/O under a session: a process on a local PTY (:class:`LocalPty`), or a VM's serial
console over a stream (:class:`Console`), both behind one small :class:`Terminal` interface."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal as signals
import struct
import termios
from collections.abc import Mapping
from typing import Protocol

import trio

from virtrio.channels.pty import ErrorCode

from ._errors import SessionError

__all__ = ["Console", "LocalPty", "Terminal"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
#: Output already waiting in the PTY is gathered into chunks of up to this many bytes.
_BURST_SIZE = 128 * 1024


class Terminal(Protocol):
    """The I/O of a session: a PTY with a process, or a console socket."""

    kind: str
    command: str
    pid: int | None

    async def receive_some(self) -> bytes: ...  # b"" at the end
    async def send_all(self, data: bytes) -> None: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def signal(self, number: int) -> None: ...
    def kill(self) -> None: ...
    async def wait(self) -> tuple[int | None, int | None]: ...  # (code, signal)
    async def aclose(self) -> None: ...


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _setsid_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """``argv`` run through util-linux's ``setsid --ctty``, which makes the PTY the program's
    controlling terminal (what ``os.login_tty`` does) without Python code in the child.

    Why: ``preexec_fn`` runs Python between fork and exec, which is unsafe in a process with
    threads (libvirt's event loop, Trio's worker threads): a lock another thread held at the
    fork stays locked in the child forever. subprocess's ``start_new_session`` alone is not
    enough: it calls setsid() after the PTY is already on fds 0-2, so the PTY is inherited, not
    opened, and never becomes the controlling terminal (no /dev/tty, no job control). setsid(1)
    is a small C program that calls setsid() then TIOCSCTTY on its stdin and execs the program:
    the same process, so the pid we wait for is the program's (it forks only when it starts
    as a process group leader, which a child of ours never is: no ``start_new_session``).

    The program is looked up here, on the session's PATH, so a missing one is an error at once
    rather than setsid's message on the terminal.
    """
    program = shutil.which(argv[0], path=env.get("PATH", os.defpath))
    if program is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), argv[0])
    setsid = shutil.which("setsid") or "/usr/bin/setsid"
    return [setsid, "--ctty", program, *argv[1:]]


class LocalPty:
    kind = "pty"

    def __init__(self, master: int, process: trio.Process, command: str) -> None:
        self._master = master
        self._stream = trio.lowlevel.FdStream(master)
        self._process = process
        self.command = command
        self.pid: int | None = process.pid

    @classmethod
    async def spawn(
        cls, argv: list[str], env: Mapping[str, str], cwd: str | None, cols: int, rows: int
    ) -> LocalPty:
        master, slave = os.openpty()
        try:
            _set_size(master, cols, rows)
            process = await trio.lowlevel.open_process(
                _setsid_argv(argv, env),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            # The child has its copies: once every process holding the slave is gone, reading
            # the master reports EIO, the end of the session's output.
            os.close(slave)
        return cls(master, process, argv[0])

    async def receive_some(self) -> bytes:
        try:
            first = await self._stream.receive_some(_READ_SIZE)
        except trio.BrokenResourceError as exc:  # EIO: no process holds the terminal any more
            if isinstance(exc.__cause__, OSError) and exc.__cause__.errno != errno.EIO:
                log.warning("pty %s: read failed: %s", self.command, exc.__cause__)
            return b""
        except trio.ClosedResourceError:
            return b""
        # A PTY read returns at most ~4 KiB, but under a flood more is already waiting: take it
        # now, so a burst becomes one chunk for every subscriber instead of dozens of wake-ups.
        # An interactive echo pays one extra non-blocking read (EAGAIN), never a wait.
        chunks = [first]
        size = len(first)
        while size < _BURST_SIZE:
            try:
                more = os.read(self._master, _READ_SIZE)
            except OSError:  # EAGAIN: nothing more now; EIO: seen again by the next call
                break
            if not more:
                break
            chunks.append(more)
            size += len(more)
        return first if len(chunks) == 1 else b"".join(chunks)

    async def send_all(self, data: bytes) -> None:
        await self._stream.send_all(data)

    def resize(self, cols: int, rows: int) -> None:
        _set_size(self._master, cols, rows)  # the kernel sends SIGWINCH to the foreground group

    def signal(self, number: int) -> None:
        group = self._foreground() or self._process.pid  # the foreground job, like a typed ^C
        try:
            os.killpg(group, number)
        except ProcessLookupError:
            # the program is not its group's leader yet (setsid(1) has not run): itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, number)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signals.SIGKILL)  # even before setsid(1) has run
        for group in {self._process.pid, self._foreground()}:
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signals.SIGKILL)

    def _foreground(self) -> int | None:
        """The terminal's foreground process group; None while it has none (0 from the
        kernel, which killpg would take for our own group) or it would be ours."""
        try:
            group = os.tcgetpgrp(self._master)
        except OSError:
            return None
        return group if group > 0 and group != os.getpgrp() else None

    async def wait(self) -> tuple[int | None, int | None]:
        status = await self._process.wait()
        return (status, None) if status >= 0 else (None, -status)

    async def aclose(self) -> None:
        await self._stream.aclose()


class Console:
    kind = "console"
    pid: int | None = None

    def __init__(self, stream: trio.abc.Stream, address: str) -> None:
        self._stream = stream
        self.command = address
        self._ended = trio.Event()
        self._killed = False
        self._receiving: trio.CancelScope | None = None

    async def receive_some(self) -> bytes:
        data: bytes | bytearray = b""
        if not self._killed:
            with trio.CancelScope() as self._receiving:
                try:
                    data = await self._stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
            self._receiving = None
        if not data:
            self._ended.set()
        return bytes(data)

    async def send_all(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise SessionError(
                f"console {self.command} is closed: {exc}", ErrorCode.UNKNOWN_SESSION
            ) from None

    def resize(self, cols: int, rows: int) -> None:
        pass  # a serial line has no size: only the emulator's screen changes

    def signal(self, number: int) -> None:
        raise SessionError(
            f"console session {self.command} has no process to signal", ErrorCode.UNSUPPORTED
        )

    def kill(self) -> None:
        self._killed = True
        self._ended.set()
        if self._receiving is not None:  # wake the reader: the console reads as ended
            self._receiving.cancel()

    async def wait(self) -> tuple[int | None, int | None]:
        await self._ended.wait()
        return None, None

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)
