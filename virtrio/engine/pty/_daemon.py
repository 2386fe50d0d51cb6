"""The terminal session daemon (seed 003): :func:`serve_pty_daemon`.

Tasks, all owned by the daemon's nursery::

    serve_pty_daemon
    ├── StreamServer ─ one task per connection: reads and answers requests in order
    │                  └── one forwarder per attached session (see _connection.py)
    ├── the reactor: every PTY session's output and exit (PTY → fan-out → backlog), no task
    │   per session (see _reactor.py)
    └── short-lived tasks: a console session's reader, an emulator catching up, a drain

Nothing polls: connections wait on their socket, forwarders on their queue, the reactor on the
epoll set of every session's PTY and pidfd. Output for a subscriber with nothing queued is
written to its socket at once, from the reactor (no wake-up of its forwarder); the forwarder
sends what could not be written so (a full socket) and everything after it, in order.

A bad frame is answered with an ``error`` naming it; when the stream cannot be trusted any more
(oversize length) that connection alone is closed. A client over ``max_connections`` is
answered with a ``too_many_connections`` error, then closed.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

import trio

from virtrio.channels import Address, StreamServer, open_listeners
from virtrio.channels.pty import Create, Error, ErrorCode, encode
from virtrio.errors import ConfigError
from virtrio.primitives import Fanout

from ._config import CHUNK_BYTES, PtyDaemonConfig
from ._connection import Connection
from ._consoles import ConsoleOpener
from ._reactor import Reactor
from ._session import Session, SessionError, spawn_session
from ._statistics import Counters, PtyDaemonStatistics

__all__ = ["PtyDaemon", "PtyDaemonStatistics", "serve_pty_daemon"]

log = logging.getLogger(__name__)


class PtyDaemon:
    """A running daemon, as :func:`serve_pty_daemon` reports it started."""

    def __init__(self, config: PtyDaemonConfig, nursery: trio.Nursery) -> None:
        self.config = config
        self._nursery = nursery
        self._sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._reserved = 0
        self._counters = Counters()
        self._open_console = ConsoleOpener(nursery)
        self._reactor = Reactor()
        self._fanout = functools.partial(
            Fanout[bytes],
            max_queue=config.max_queue_size,
            warn_remaining=config.flow_threshold,
            overflow="disconnect" if config.auto_disconnect else "drop",
            size=_chunks,
        )
        self._server: StreamServer[trio.SocketStream] = StreamServer(
            self._handle,
            max_connections=config.max_connections,
            refuse=_refuse,
            name="the daemon",
        )

    def statistics(self) -> PtyDaemonStatistics:
        """The daemon's counters now."""
        served = self._server.statistics()
        return self._counters.snapshot(
            sessions=len(self._sessions),
            connections=served.active,
            accepted=served.accepted,
            refused=served.refused,
        )

    def _count(self, name: str, amount: int = 1) -> None:
        self._counters.count(name, amount)

    @property
    def socket_path(self) -> Path:
        """Where clients connect."""
        return self.config.socket_path

    @property
    def sessions(self) -> Mapping[int, Session]:
        """The live sessions by id (read-only view)."""
        return dict(self._sessions)

    @property
    def connection_count(self) -> int:
        """Clients connected now."""
        return self._server.statistics().active

    def _session(self, ident: int) -> Session:
        try:
            return self._sessions[ident]
        except KeyError:
            raise SessionError(f"no session {ident}", ErrorCode.UNKNOWN_SESSION) from None

    async def _create(self, request: Create) -> Session:
        config = self.config
        if len(self._sessions) + self._reserved >= config.max_sessions:
            raise SessionError(
                f"the daemon already runs its maximum of {config.max_sessions} sessions",
                ErrorCode.TOO_MANY_SESSIONS,
            )
        self._reserved += 1
        try:
            session = await spawn_session(
                next(self._ids),
                request.options,
                default_shell=config.default_shell,
                emulator=config.emulator,
                scrollback=config.scrollback_lines,
                fanout=self._fanout,
                backlog=config.emulator_backlog,
                drain_timeout=config.drain_timeout,
                open_console=self._open_console,
            )
            self._sessions[session.id] = session
            self._count("sessions_started")
        finally:
            self._reserved -= 1
        session.start(self._reactor, self._nursery, self._session_ended)
        log.info("session %d: started %s (pid %s)", session.id, session.info().command, session.pid)
        return session

    def _session_ended(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        log.info(
            "session %d: ended (code %s, signal %s)",
            session.id,
            session.exit_code,
            session.exit_signal,
        )

    async def _serve_sessions(self, *, task_status: trio.TaskStatus[None]) -> None:
        """The reactor; on the way out, every session is killed, reaped and closed."""
        try:
            task_status.started()
            await self._reactor.run()
        finally:
            with trio.CancelScope(shield=True):
                for session in list(self._sessions.values()):
                    try:
                        await session.aclose()
                    except Exception:  # pragma: no cover - a bug must not leave the others
                        log.exception("session %d: closing failed", session.id)

    async def _handle(self, stream: trio.SocketStream) -> None:
        await Connection(self, stream).run()


async def _refuse(stream: trio.SocketStream, reason: str) -> None:
    await stream.send_all(encode(Error(ErrorCode.TOO_MANY_CONNECTIONS.value, reason)))


def _chunks(data: bytes) -> int:
    """The queue room an output frame takes: chunks of CHUNK_BYTES, so the bound is in bytes."""
    return max(1, -(-len(data) // CHUNK_BYTES))


def _prepare_directory(folder: Path) -> None:
    """Create the socket's directory private (0700), or check that an existing one is."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"the socket directory {folder} must be private to its owner (mode 0700, owned by "
            f"uid {os.getuid()}), not mode {stat.S_IMODE(info.st_mode):04o} uid {info.st_uid}: "
            "other users could connect and run commands as you"
        )


async def _refuse_if_running(path: Path) -> None:
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError:
        return  # no socket, or a stale one (nobody listening): it is replaced
    await stream.aclose()
    raise ConfigError(f"a daemon is already listening on {path}")


async def serve_pty_daemon(
    config: PtyDaemonConfig | None = None,
    *,
    task_status: trio.TaskStatus[PtyDaemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve terminal sessions on a Unix socket until cancelled.

    The socket (mode 0600) is created in a directory only its owner can enter; on exit every
    session's process group is killed and reaped and the socket removed. Reports the
    :class:`PtyDaemon` once listening.

    Args:
        config: default: :meth:`PtyDaemonConfig.from_env`.

    Raises:
        ConfigError: the socket directory is not private, or another daemon listens there.
        ConnectError: the socket could not be bound.
    """
    config = PtyDaemonConfig.from_env() if config is None else config
    path = config.socket_path
    _prepare_directory(path.parent)
    await _refuse_if_running(path)
    listeners = await open_listeners(Address.unix(path))
    try:
        os.chmod(path, 0o600)
        async with trio.open_nursery() as nursery:
            daemon = PtyDaemon(config, nursery)
            await nursery.start(daemon._serve_sessions)
            await nursery.start(daemon._server.serve_listeners, listeners)
            log.info("pty daemon listening on %s", path)
            task_status.started(daemon)
    finally:
        path.unlink(missing_ok=True)
        for listener in listeners:
            listener.socket.close()
