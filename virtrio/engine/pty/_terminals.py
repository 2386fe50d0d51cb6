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
#: Output already waiting in the PTY is gathered into chunks of up to this many bytes...
_BURST_SIZE = 128 * 1024
#: ... when a first read brought at least this much (a flood, not an echo).
_BURST_FROM = 1024


class Terminal(Protocol):
    """What a session does with its terminal, a PTY with a process or a console socket (how
    its output is read differs: the reactor polls a PTY, a task reads a console)."""

    kind: str
    command: str
    pid: int | None

    def write_nowait(self, data: bytes | memoryview) -> int: ...  # what it took at once
    async def send_all(self, data: bytes) -> None: ...
    def resize(self, cols: int, rows: int) -> None: ...
    def signal(self, number: int) -> None: ...
    def kill(self) -> None: ...


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
    """A program on a local PTY, spawned with ``posix_spawn``: its master (non-blocking) and a
    pidfd for its exit, both polled by the daemon's :class:`~._reactor.Reactor` (no task, no
    per-session Trio registration while it is idle)."""

    kind = "pty"
    __slots__ = ("_master", "_pidfd", "_reaped", "command", "pid")

    def __init__(self, master: int, pid: int, pidfd: int, command: str) -> None:
        self._master = master
        self._pidfd = pidfd
        self._reaped = False
        self.command = command
        self.pid: int | None = pid

    @property
    def fd(self) -> int:
        """The PTY master, readable when there is output (or at the end: EIO)."""
        return self._master

    @property
    def pidfd(self) -> int:
        """Readable once the program has exited (then :meth:`reap`)."""
        return self._pidfd

    @classmethod
    def spawn(
        cls, argv: list[str], env: Mapping[str, str], cwd: str | None, cols: int, rows: int
    ) -> LocalPty:
        """Start ``argv`` on a new PTY of ``cols`` x ``rows``.

        ``posix_spawn`` (a vfork, a few hundred µs even in a large process) runs in the event
        loop: no worker thread, no ``Popen`` kept per session. Like ``Popen``, the child gets
        SIGPIPE and SIGXFSZ back at their defaults and an empty signal mask; every other
        descriptor of the daemon is close-on-exec (Python's default), so none leaks into it.

        Raises:
            OSError: the program or ``cwd`` cannot be found, or the spawn failed.
        """
        full = _setsid_argv(argv, env)
        if cwd is not None:
            if not os.path.isdir(cwd):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cwd)
            # posix_spawn has no chdir: env(1) changes directory then execs, in the same pid
            full = [shutil.which("env") or "/usr/bin/env", f"--chdir={cwd}", *full]
        master, slave = os.openpty()
        try:
            _set_size(master, cols, rows)
            os.set_blocking(master, False)
            pid = os.posix_spawn(
                full[0],
                full,
                dict(env),
                file_actions=[(os.POSIX_SPAWN_DUP2, slave, fd) for fd in (0, 1, 2)],
                setsigdef=(signals.SIGPIPE, signals.SIGXFSZ),
                setsigmask=(),
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            # The child has its copies: once every process holding the slave is gone, reading
            # the master reports EIO, the end of the session's output.
            os.close(slave)
        try:
            pidfd = os.pidfd_open(pid)
        except BaseException:
            os.kill(pid, signals.SIGKILL)
            os.waitpid(pid, 0)
            os.close(master)
            raise
        return cls(master, pid, pidfd, argv[0])

    def read_nowait(self) -> bytes | None:
        """What the program wrote, None if nothing is waiting, or b"" at the end (EIO: no
        process holds the terminal any more)."""
        try:
            first = os.read(self._master, _READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno != errno.EIO:
                log.warning("pty %s: read failed: %s", self.command, exc)
            return b""
        if len(first) < _BURST_FROM:
            return first  # an echo or a prompt: no second read that would find nothing
        # A PTY read returns at most ~4 KiB, but under a flood more is already waiting: take it
        # now, so a burst becomes one chunk for every subscriber instead of dozens of wake-ups.
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

    def write_nowait(self, data: bytes | memoryview) -> int:
        """Write what the terminal takes now; how many bytes that was.

        Raises:
            trio.BrokenResourceError: the terminal is gone.
        """
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"pty write failed: {exc}") from exc

    async def send_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if not (written := self.write_nowait(view)):
                await trio.lowlevel.wait_writable(self._master)
            view = view[written:]
        await trio.lowlevel.checkpoint()

    def resize(self, cols: int, rows: int) -> None:
        _set_size(self._master, cols, rows)  # the kernel sends SIGWINCH to the foreground group

    def signal(self, number: int) -> None:
        if self._reaped or self.pid is None:
            return  # its pid may belong to another process by now
        pid = self.pid
        group = self._foreground() or pid  # the foreground job, like a typed ^C
        try:
            os.killpg(group, number)
        except ProcessLookupError:
            # the program is not its group's leader yet (setsid(1) has not run): itself
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)

    def kill(self) -> None:
        if self.pid is None:
            return
        groups = {self.pid, self._foreground()}
        if not self._reaped:  # else the pid may be another process's by now
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signals.SIGKILL)  # even before setsid(1) has run
        else:
            groups.discard(self.pid)
        for group in groups:
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

    def reap(self) -> tuple[int | None, int | None] | None:
        """``(code, signal)`` once the program has exited (it is reaped then), else None."""
        if self._reaped or self.pid is None:
            return None
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: its status is lost
            self._reaped = True
            return None, None
        if pid == 0:
            return None
        self._reaped = True
        code = os.waitstatus_to_exitcode(status)
        return (code, None) if code >= 0 else (None, -code)

    async def wait(self) -> tuple[int | None, int | None]:
        """Wait for the exit (after :meth:`kill`, at shutdown)."""
        while (status := self.reap()) is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        return status

    def close(self) -> None:
        """Close the master and the pidfd (the reactor no longer polls them)."""
        for fd in (self._master, self._pidfd):
            if fd >= 0:
                trio.lowlevel.notify_closing(fd)
                os.close(fd)
        self._master = self._pidfd = -1


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

    def write_nowait(self, data: bytes | memoryview) -> int:
        return 0  # a stream has no non-blocking write: send_all

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
