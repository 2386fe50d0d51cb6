"""A terminal session: a process on a PTY (or a VM's serial console), its output fan-out and
its emulated screen.

The session's reader task is the only reader of the terminal. Each chunk it reads is published
on the session's :class:`~virtrio.nurseries.Fanout` at once (each subscriber has its own bounded
queue; a slow one is warned, then loses output or is disconnected, and never slows the others),
then appended to the :class:`~._emulator.LaggingScreen` backlog; the emulator runs in its own
task when output pauses. When the process exits, the reader drains what is left (until the PTY
reports EIO, i.e. no process holds it any more), the exit status is recorded, and the fan-out is
closed: every subscriber receives all queued output before it learns of the exit.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal as signals
import struct
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import trio

from virtrio.channels import open_stream
from virtrio.channels.pty import CreateOptions, ErrorCode, SessionInfo
from virtrio.errors import LocalProtocolError, VirtrioError
from virtrio.primitives import Fanout

from ._emulator import LaggingScreen, TerminalEmulator

__all__ = ["Session", "SessionError", "parse_signal", "spawn_session"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
#: Output already waiting in the PTY is gathered into chunks of up to this many bytes.
_BURST_SIZE = 32 * 1024
#: The emulator catches up once output has paused this long (seconds).
_EMULATE_WHEN_QUIET = 0.05
#: Bytes emulated between checkpoints while catching up.
_EMULATE_SLICE = 4096


class SessionError(LocalProtocolError):
    """A request on a session cannot be done; ``code`` is the error reply's code."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def parse_signal(value: int | str) -> int:
    """A signal number from a number or a name (``"SIGINT"``, ``"int"``).

    Raises:
        SessionError: no such signal.
    """
    if isinstance(value, int):
        if value in signals.valid_signals():
            return value
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if isinstance(number := getattr(signals.Signals, name, None), signals.Signals):
            return int(number)
    raise SessionError(f"unknown signal {value!r}", ErrorCode.INVALID_ARGUMENT)


class _Terminal(Protocol):
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


def _make_controlling_terminal() -> None:  # runs in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _LocalPty:
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
    ) -> _LocalPty:
        master, slave = os.openpty()
        try:
            _set_size(master, cols, rows)
            process = await trio.lowlevel.open_process(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_make_controlling_terminal,
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
        try:
            group = os.tcgetpgrp(self._master)  # the foreground job, like a typed ^C
        except OSError:
            group = self._process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, number)

    def kill(self) -> None:
        for group in {self._process.pid, self._foreground()}:
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signals.SIGKILL)

    def _foreground(self) -> int | None:
        try:
            return os.tcgetpgrp(self._master)
        except OSError:
            return None

    async def wait(self) -> tuple[int | None, int | None]:
        status = await self._process.wait()
        return (status, None) if status >= 0 else (None, -status)

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Console:
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


class Session:
    """One session of the daemon. Made by :func:`spawn_session`, run by :meth:`run`."""

    def __init__(
        self,
        ident: int,
        terminal: _Terminal,
        emulator: TerminalEmulator,
        *,
        cols: int,
        rows: int,
        fanout: Fanout[bytes],
        backlog: int,
        drain_timeout: float,
    ) -> None:
        self.id = ident
        self._terminal = terminal
        self.cols = cols
        self.rows = rows
        #: Output chunks, one bounded queue per attached subscriber.
        self.output = fanout
        self.screen = LaggingScreen(emulator, backlog=backlog)
        self.created = time.time()
        self.last_attached: float | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        #: Set once the session ended and its fan-out is closed.
        self.ended = trio.Event()
        self._drain_timeout = drain_timeout
        self._write_lock = trio.StrictFIFOLock()
        self._dirty = trio.Event()
        self._caught_up = trio.Event()
        self._last_output = 0.0

    async def wait_emulated(self) -> None:
        """Return once the emulated screen has caught up with all the output so far (the
        emulator runs once output pauses), so a snapshot taken now is current. Waits as long
        as output keeps coming: put it under a deadline."""
        while self.screen.pending:
            await self._caught_up.wait()
        await trio.lowlevel.checkpoint()

    @property
    def kind(self) -> str:
        """``"pty"`` or ``"console"``."""
        return self._terminal.kind

    @property
    def pid(self) -> int | None:
        """The child's process id (None for a console)."""
        return self._terminal.pid

    def info(self) -> SessionInfo:
        """This session as the ``list`` reply shows it."""
        return SessionInfo(
            session=self.id,
            kind=self.kind,
            command=self._terminal.command,
            pid=self.pid,
            cols=self.cols,
            rows=self.rows,
            created=self.created,
            last_attached=self.last_attached,
            attached=self.output.subscriber_count,
        )

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the session (waits while the terminal's input buffer is full)."""
        if self.ended.is_set():
            raise SessionError(f"session {self.id} has ended", ErrorCode.UNKNOWN_SESSION)
        async with self._write_lock:
            try:
                await self._terminal.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise SessionError(
                    f"session {self.id}: input failed: {exc}", ErrorCode.UNKNOWN_SESSION
                ) from None

    def resize(self, cols: int, rows: int) -> None:
        """Set the terminal size (TIOCSWINSZ; the foreground job gets SIGWINCH)."""
        if not (cols and rows):
            raise SessionError(
                f"terminal size must be at least 1x1, got {cols}x{rows}", ErrorCode.INVALID_ARGUMENT
            )
        self._terminal.resize(cols, rows)
        self.cols, self.rows = cols, rows
        self.screen.resize(cols, rows)

    def signal(self, value: int | str) -> None:
        """Send a signal to the session's foreground process group."""
        self._terminal.signal(parse_signal(value))

    def kill(self) -> None:
        """End the session now (SIGKILL to its process groups, or close the console)."""
        self._terminal.kill()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward output until the session ends, then record its exit and close the fan-out."""
        try:
            async with trio.open_nursery() as nursery:
                reader_done = trio.Event()
                nursery.start_soon(self._read, reader_done)
                nursery.start_soon(self._emulate)
                task_status.started()
                code, signal = await self._terminal.wait()
                with trio.move_on_after(self._drain_timeout):
                    await reader_done.wait()
                self.exit_code, self.exit_signal = code, signal
                nursery.cancel_scope.cancel()
        finally:
            self.output.close()
            self.ended.set()
            with trio.CancelScope(shield=True):
                if self.exit_code is None and self.exit_signal is None and self.pid is not None:
                    self.kill()  # the daemon is shutting down: leave no orphan behind
                    self.exit_code, self.exit_signal = await self._terminal.wait()
                await self._terminal.aclose()

    async def _read(self, done: trio.Event) -> None:
        receive_some = self._terminal.receive_some
        publish = self.output.publish
        append = self.screen.append
        try:
            while data := await receive_some():
                publish(data)  # forwarding first: it never waits for the emulator
                append(data)
                self._last_output = trio.current_time()
                self._dirty.set()
        finally:
            done.set()

    async def _emulate(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty = trio.Event()
            while self.screen.pending:
                quiet_at = self._last_output + _EMULATE_WHEN_QUIET
                if quiet_at > trio.current_time():
                    await trio.sleep_until(quiet_at)  # a debounce, re-armed by new output
                    continue
                try:
                    self.screen.catch_up(_EMULATE_SLICE)
                except Exception:  # an emulator bug costs the snapshot, never the session
                    log.exception("session %d: terminal emulator failed; resetting it", self.id)
                    self.screen.emulator.reset()
                await trio.lowlevel.checkpoint()
            self._caught_up.set()
            self._caught_up = trio.Event()


def _local_environment(options: CreateOptions) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TERM", "xterm-256color")
    env.update(options.env)
    return env


async def spawn_session(
    ident: int,
    options: CreateOptions,
    *,
    default_shell: str,
    emulator: Callable[[int, int, int], TerminalEmulator],
    scrollback: int,
    fanout: Fanout[bytes],
    backlog: int,
    drain_timeout: float,
    open_console: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
) -> Session:
    """Start the process (or open the console) that ``options`` describe.

    ``open_console`` turns a console address into a stream (default: a socket address); the
    daemon passes one that also opens libvirt consoles.

    Raises:
        SessionError: bad options, or the program or console could not be started.
    """
    if not (options.cols and options.rows):
        raise SessionError(
            f"terminal size must be at least 1x1, got {options.cols}x{options.rows}",
            ErrorCode.INVALID_ARGUMENT,
        )
    if options.shell and options.command:
        raise SessionError("give either 'shell' or 'command', not both", ErrorCode.INVALID_ARGUMENT)
    terminal: _Terminal
    if options.console is not None:
        try:
            if open_console is None:
                stream: trio.abc.Stream = await open_stream(options.console, timeout=5)
            else:
                stream = await open_console(options.console)
        except (VirtrioError, ValueError) as exc:
            raise SessionError(str(exc), ErrorCode.SPAWN_FAILED) from None
        terminal = _Console(stream, options.console)
    else:
        program = options.command or options.shell or default_shell
        try:
            terminal = await _LocalPty.spawn(
                [program, *options.args],
                _local_environment(options),
                options.cwd,
                options.cols,
                options.rows,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SessionError(
                f"cannot start {program!r}: {getattr(exc, 'strerror', None) or exc}",
                ErrorCode.SPAWN_FAILED,
            ) from None
    return Session(
        ident,
        terminal,
        emulator(options.cols, options.rows, scrollback),
        cols=options.cols,
        rows=options.rows,
        fanout=fanout,
        backlog=backlog,
        drain_timeout=drain_timeout,
    )
