"""A terminal session: a process on a PTY (or a VM's serial console), its output fan-out and
its emulated screen.

The session's reader task is the only reader of the terminal. Each chunk it reads is published
on the session's :class:`~virtrio.nurseries.Fanout` at once (each subscriber has its own bounded
queue; a slow one is warned, then loses output or is disconnected, and never slows the others),
then appended to the :class:`~._emulator.LaggingScreen` backlog; the emulator catches up when
output pauses, in a task started when output arrives and ended once it has caught up. When the
process exits, the reader drains what is left (until the PTY reports EIO, i.e. no process holds
it any more), the exit status is recorded, and the fan-out is closed: every subscriber receives
all queued output before it learns of the exit.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Awaitable, Callable

import trio

from virtrio.channels import open_stream
from virtrio.channels.pty import CreateOptions, ErrorCode, SessionInfo, encode_output
from virtrio.errors import VirtrioError
from virtrio.primitives import Fanout

from ._emulator import LaggingScreen, TerminalEmulator
from ._errors import SessionError, parse_signal
from ._terminals import Console, LocalPty, Terminal

__all__ = ["Session", "SessionError", "parse_signal", "spawn_session"]

log = logging.getLogger(__name__)

_READ_SIZE = 65536
#: Output already waiting in the PTY is gathered into chunks of up to this many bytes.
_BURST_SIZE = 32 * 1024
#: The emulator catches up once output has paused this long (seconds).
_EMULATE_WHEN_QUIET = 0.05
#: Bytes emulated between checkpoints while catching up.
_EMULATE_SLICE = 4096


class Session:
    """One session of the daemon. Made by :func:`spawn_session`, run by :meth:`run`."""

    def __init__(
        self,
        ident: int,
        terminal: Terminal,
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
        #: Output chunks, each already an ``output`` frame (:func:`encode_output`), one bounded
        #: queue per attached subscriber.
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
        self._caught_up = trio.Event()
        self._last_output = 0.0
        # the emulator's task runs only while there is something to emulate: an idle session
        # holds no task for it (a Trio task and its frames take about 2 KiB)
        self._emulating = False
        self._nursery: trio.Nursery | None = None

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
        self._emulate_soon()

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
                self._nursery = nursery
                reader_done = trio.Event()
                nursery.start_soon(self._read, reader_done)
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
        output = self.output
        append = self.screen.append
        ident = self.id
        try:
            while data := await receive_some():
                # forwarding first: it never waits for the emulator; each chunk is encoded
                # once, whatever the number of subscribers
                if output.subscriber_count:
                    output.publish(encode_output(ident, data))
                append(data)
                self._last_output = trio.current_time()
                self._emulate_soon()
        finally:
            done.set()

    def _emulate_soon(self) -> None:
        if not self._emulating and self._nursery is not None:
            self._emulating = True
            self._nursery.start_soon(self._emulate)

    async def _emulate(self) -> None:
        try:
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
        finally:
            self._emulating = False  # no checkpoint since pending was seen empty: none is lost
            self._caught_up.set()  # wake wait_emulated (it checks pending again)
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
    terminal: Terminal
    if options.console is not None:
        try:
            if open_console is None:
                stream: trio.abc.Stream = await open_stream(options.console, connect_timeout=5)
            else:
                stream = await open_console(options.console)
        except (VirtrioError, ValueError) as exc:
            raise SessionError(str(exc), ErrorCode.SPAWN_FAILED) from None
        terminal = Console(stream, options.console)
    else:
        program = options.command or options.shell or default_shell
        try:
            terminal = await LocalPty.spawn(
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
