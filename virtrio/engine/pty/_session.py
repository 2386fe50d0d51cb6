"""A terminal session: a process on a PTY (or a VM's serial console), its output fan-out and
its screen.

A PTY session has no task of its own: the daemon's :class:`~._reactor.Reactor` calls
:meth:`Session._on_output_ready` when its PTY has output and :meth:`Session._on_exit_ready` when
its program has exited. A console session has one task, reading its stream. Each chunk read is
published on the session's :class:`~virtrio.primitives.Fanout` at once (each subscriber has its
own bounded queue, or gets it written straight to its socket when it has nothing queued; a slow
one is warned, then loses output or is disconnected, and never slows the others), then appended
to the :class:`~._emulator.LaggingScreen`'s raw backlog; an emulator exists only once that
backlog has grown (or the screen is asked for), and catches up when output pauses, in a task
started then and ended once it has caught up. When the process exits, the rest of its output is
read (until the PTY reports EIO, i.e. no process holds it any more, or ``drain_timeout``), the
exit status is recorded, and the fan-out is closed: every subscriber receives all queued output
before it learns of the exit.

An idle session thus holds a few small objects, its raw output so far (up to the screen's
``keep_raw``) and two descriptors in the reactor's epoll set: no task, no emulator, no buffer.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable

import trio

from virtrio.channels import open_stream
from virtrio.channels.pty import CreateOptions, ErrorCode, SessionInfo, encode_output
from virtrio.errors import VirtrioError
from virtrio.primitives import Fanout, SpinPolicy

from ._emulator import EmulatorFactory, LaggingScreen
from ._errors import SessionError, parse_signal
from ._reactor import Reactor
from ._terminals import Console, LocalPty

__all__ = ["Session", "SessionError", "parse_signal", "spawn_session"]

log = logging.getLogger(__name__)

#: The emulator catches up once output has paused this long (seconds).
_EMULATE_WHEN_QUIET = 0.05
#: Bytes emulated between checkpoints while catching up.
_EMULATE_SLICE = 4096
#: A read this large tells the reactor that more output is likely waiting.
_BUSY_BYTES = 16 * 1024
#: How long shutdown waits for a killed program to be reaped (seconds).
_REAP_TIMEOUT = 5.0


class Session:
    """One session of the daemon. Made by :func:`spawn_session`, started by :meth:`start`."""

    __slots__ = (
        "_drain_timeout",
        "_emulating",
        "_ended",
        "_exited",
        "_fanout",
        "_last_output",
        "_make_fanout",
        "_nursery",
        "_on_end",
        "_output_done",
        "_reactor",
        "_terminal",
        "_write_lock",
        "cols",
        "created",
        "exit_code",
        "exit_signal",
        "id",
        "last_attached",
        "rows",
        "screen",
    )

    def __init__(
        self,
        ident: int,
        terminal: LocalPty | Console,
        screen: LaggingScreen,
        *,
        cols: int,
        rows: int,
        fanout: Callable[[], Fanout[bytes]],
        drain_timeout: float,
    ) -> None:
        self.id = ident
        self._terminal = terminal
        self.cols = cols
        self.rows = rows
        # made on the first subscription (see output)
        self._make_fanout = fanout
        self._fanout: Fanout[bytes] | None = None
        self.screen = screen
        self.created = time.time()
        self.last_attached: float | None = None
        self.exit_code: int | None = None
        self.exit_signal: int | None = None
        self._drain_timeout = drain_timeout
        # these are made when first needed: an idle session holds none of them
        self._write_lock: trio.StrictFIFOLock | None = None
        self._ended: trio.Event | bool = False  # an Event once someone waits for the end
        self._output_done: trio.Event | bool = False
        self._exited = False
        self._last_output = 0.0
        # the emulator's task runs only while there is something to emulate
        self._emulating = False
        self._nursery: trio.Nursery | None = None
        self._reactor: Reactor | None = None
        self._on_end: Callable[[Session], None] | None = None

    @property
    def output(self) -> Fanout[bytes]:
        """Output chunks, each already an ``output`` frame (:func:`encode_output`), one bounded
        queue per attached subscriber. Made on first use (closed if the session has ended)."""
        if (fanout := self._fanout) is None:
            fanout = self._fanout = self._make_fanout()
            if self.is_ended:
                fanout.close()
        return fanout

    @property
    def is_ended(self) -> bool:
        """Whether the session ended (its fan-out is closed)."""
        ended = self._ended
        return ended if isinstance(ended, bool) else ended.is_set()

    @property
    def ended(self) -> trio.Event:
        """Set once the session ended and its fan-out is closed."""
        if isinstance(self._ended, bool):
            event = trio.Event()
            if self._ended:
                event.set()
            self._ended = event
        return self._ended

    async def wait_emulated(self) -> None:
        """Return once the emulated screen has caught up with all the output so far (made and
        fed now if there is no emulator yet), so a snapshot taken now is current. Waits as long
        as output keeps coming: put it under a deadline."""
        await trio.lowlevel.checkpoint()
        while self.screen.pending or self.screen.emulator is None:
            self._catch_up_slice()
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
            attached=0 if self._fanout is None else self._fanout.subscriber_count,
        )

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the session (waits while the terminal's input buffer is full).

        What the terminal takes at once is written at once, without a checkpoint (keystrokes:
        the hot path; the connection's next receive is one), unless an earlier write still
        waits, which it then queues behind."""
        if self.is_ended:
            raise SessionError(f"session {self.id} has ended", ErrorCode.UNKNOWN_SESSION)
        lock = self._write_lock
        try:
            if lock is None or not lock.locked():
                written = self._terminal.write_nowait(data)
                if written == len(data):
                    return
                data = data[written:]
            if lock is None:
                lock = self._write_lock = trio.StrictFIFOLock()
            async with lock:
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

    # ---- the life of the session -------------------------------------------------------------

    def start(
        self, reactor: Reactor, nursery: trio.Nursery, on_end: Callable[[Session], None]
    ) -> None:
        """Begin forwarding output: ``reactor`` polls a PTY; a console's reader is a task in
        ``nursery`` (as are the emulator's catch-ups and the drain after an exit).
        ``on_end(session)`` is called once the session ended."""
        self._reactor, self._nursery, self._on_end = reactor, nursery, on_end
        terminal = self._terminal
        if isinstance(terminal, LocalPty):
            reactor.add(terminal.fd, self._on_output_ready)
            reactor.add(terminal.pidfd, self._on_exit_ready)
        else:
            nursery.start_soon(self._read_console, terminal)

    def _output(self, data: bytes) -> None:
        # forwarding first, encoded once whatever the number of subscribers; never waits
        fanout = self._fanout
        if fanout is not None and fanout.subscriber_count:
            fanout.publish(encode_output(self.id, data))
        screen = self.screen
        screen.append(data)
        if self._emulating or screen.wants_emulation:
            # the emulator's debounce: it waits while output flows (pyte is far slower)
            self._last_output = trio.current_time()
            self._emulate_soon()

    def await_echo(self, spin: SpinPolicy) -> bool:
        """After input was written: poll the PTY for the echo within ``spin``'s (fair) window
        and forward it in this pass, not the reactor's (True then). It stops once another of
        the reactor's descriptors is readable (a flood elsewhere is never held up). A no-op
        for a console or an ended session."""
        terminal, reactor = self._terminal, self._reactor
        if not isinstance(terminal, LocalPty) or self.is_ended or reactor is None:
            return False
        deadline = trio.current_effective_deadline()
        data = spin.poll_call(terminal.read_nowait, deadline, stop=reactor.ready)
        if data is None:
            return False
        self._took(data)
        return True

    def _on_output_ready(self) -> bool:
        terminal = self._terminal
        assert isinstance(terminal, LocalPty)
        return self._took(terminal.read_nowait())

    def _took(self, data: bytes | None) -> bool:
        """Forward what a read of the PTY brought (None: nothing, b"": its end); true when it
        was a flood (more is likely waiting)."""
        terminal = self._terminal
        assert isinstance(terminal, LocalPty)
        if data:
            self._output(data)
            return len(data) >= _BUSY_BYTES  # a flood: the reactor looks again at once
        if data is not None:  # EIO: nobody holds the terminal any more
            assert self._reactor is not None
            self._reactor.remove(terminal.fd)
            self._end_of_output()
        return False

    def _on_exit_ready(self) -> None:
        terminal = self._terminal
        assert isinstance(terminal, LocalPty)
        assert self._reactor is not None
        self._reactor.remove(terminal.pidfd)  # readable until reaped; reaped now or lost
        status = terminal.reap() or (None, None)
        self._exited_with(*status)

    def _end_of_output(self) -> None:
        done, self._output_done = self._output_done, True
        if isinstance(done, trio.Event):
            done.set()
        if self._exited:
            self._finish()

    def _exited_with(self, code: int | None, signal: int | None) -> None:
        self.exit_code, self.exit_signal = code, signal
        self._exited = True
        if self._output_done is True:
            self._finish()
        else:  # a background job may hold the terminal open forever: drain, with a deadline
            assert self._nursery is not None
            self._nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        if isinstance(self._output_done, bool):
            self._output_done = trio.Event()
        with trio.move_on_after(self._drain_timeout):
            await self._output_done.wait()
        self._finish()

    async def _read_console(self, console: Console) -> None:
        try:
            while data := await console.receive_some():
                self._output(data)
            self._output_done = True
            self._exited = True
        finally:
            with trio.CancelScope(shield=True):
                await console.aclose()
            self._finish()

    def _finish(self) -> None:
        if self.is_ended:
            return
        terminal = self._terminal
        if isinstance(terminal, LocalPty):
            if self._reactor is not None:
                self._reactor.remove(terminal.fd)
                self._reactor.remove(terminal.pidfd)
            terminal.close()
        if self._fanout is not None:
            self._fanout.close()
        if isinstance(self._ended, trio.Event):
            self._ended.set()
        else:
            self._ended = True
        if self._on_end is not None:
            self._on_end(self)

    async def aclose(self) -> None:
        """End the session now (the daemon is shutting down): kill its program, leaving no
        orphan behind, reap it, close everything."""
        terminal = self._terminal
        with trio.CancelScope(shield=True):
            if isinstance(terminal, LocalPty) and not self._exited and not self.is_ended:
                terminal.kill()
                with trio.move_on_after(_REAP_TIMEOUT):
                    self.exit_code, self.exit_signal = await terminal.wait()
                self._exited = True
            self._finish()

    # ---- the emulator ------------------------------------------------------------------------

    def _emulate_soon(self) -> None:
        if not self._emulating and self._nursery is not None:
            self._emulating = True
            self._nursery.start_soon(self._emulate)

    def _catch_up_slice(self) -> None:
        try:
            self.screen.catch_up(_EMULATE_SLICE)
        except Exception:  # an emulator bug costs the snapshot, never the session
            log.exception("session %d: terminal emulator failed; resetting it", self.id)
            self.screen.reset()

    async def _emulate(self) -> None:
        try:
            while self.screen.pending and not self.is_ended:  # no one attaches to an ended one
                quiet_at = self._last_output + _EMULATE_WHEN_QUIET
                if quiet_at > trio.current_time():
                    await trio.sleep_until(quiet_at)  # a debounce, re-armed by new output
                    continue
                self._catch_up_slice()
                await trio.lowlevel.checkpoint()
        finally:
            self._emulating = False  # no checkpoint since pending was seen empty: none is lost


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
    emulator: EmulatorFactory,
    scrollback: int,
    fanout: Callable[[], Fanout[bytes]],
    backlog: int,
    drain_timeout: float,
    open_console: Callable[[str], Awaitable[trio.abc.Stream]] | None = None,
) -> Session:
    """Start the process (or open the console) that ``options`` describe.

    ``open_console`` turns a console address into a stream (default: a socket address); the
    daemon passes one that also opens libvirt consoles. ``fanout`` makes the session's fan-out
    (on its first subscriber); ``emulator`` its emulator (when one is needed).

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
    terminal: LocalPty | Console
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
            terminal = LocalPty.spawn(
                [program, *options.args],
                _local_environment(options),
                options.cwd,
                options.cols,
                options.rows,
            )
        except OSError as exc:
            raise SessionError(
                f"cannot start {program!r}: {exc.strerror or exc}", ErrorCode.SPAWN_FAILED
            ) from None
        await trio.lowlevel.checkpoint()
    screen = LaggingScreen(
        emulator, options.cols, options.rows, scrollback=scrollback, backlog=backlog
    )
    return Session(
        ident,
        terminal,
        screen,
        cols=options.cols,
        rows=options.rows,
        fanout=fanout,
        drain_timeout=drain_timeout,
    )
