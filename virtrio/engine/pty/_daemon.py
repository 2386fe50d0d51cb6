"""The terminal session daemon (seed 003): :func:`serve_pty_daemon`.

Tasks, all owned by the daemon's nursery::

    serve_pty_daemon
    ├── StreamServer ─ one task per connection: reads and answers requests in order
    │                  └── one forwarder per attached session: its queue → the socket
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
import time
from collections.abc import Mapping
from pathlib import Path

import trio

from virtrio.channels import Address, StreamServer, open_listeners
from virtrio.channels.pty import (
    NEED_DATA,
    REQUEST_TYPES,
    Ack,
    Attach,
    BackpressureWarning,
    ConnectionClosed,
    Create,
    Created,
    Detach,
    Error,
    ErrorCode,
    Exit,
    FrameDecoder,
    Input,
    Kill,
    Level,
    List,
    Message,
    Ok,
    PtyProtocolError,
    Request,
    Resize,
    Sessions,
    Signal,
    encode,
    encode_output,
)
from virtrio.errors import ConfigError
from virtrio.primitives import (
    Fanout,
    PressureLevel,
    SubscriberOverflowError,
    Subscription,
    open_service_nursery,
)

from ._config import CHUNK_BYTES, PtyDaemonConfig
from ._consoles import ConsoleOpener
from ._reactor import Reactor
from ._session import Session, SessionError, spawn_session
from ._statistics import Counters, PtyDaemonStatistics

__all__ = ["PtyDaemon", "PtyDaemonStatistics", "serve_pty_daemon"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
#: Output queued for one subscriber is sent in frames of up to this many bytes.
_BATCH_BYTES = 256 * 1024


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
        await _Connection(self, stream).run()


async def _refuse(stream: trio.SocketStream, reason: str) -> None:
    await stream.send_all(encode(Error(ErrorCode.TOO_MANY_CONNECTIONS.value, reason)))


class _Connection:
    """One client: its requests, answered in order, and a forwarder per attached session."""

    def __init__(self, daemon: PtyDaemon, stream: trio.SocketStream) -> None:
        self._daemon = daemon
        self._stream = stream
        self._send_lock = trio.StrictFIFOLock()
        self._attached: dict[int, Subscription[bytes]] = {}
        # sessions whose output may be written straight to the socket (their snapshot is sent)
        self._direct: set[int] = set()
        # sessions whose next queued chunk is the rest of a frame written in part
        self._partial: set[int] = set()
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def run(self) -> None:
        try:
            with self._scope:
                async with open_service_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        await self._read_requests()
                    finally:
                        nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection lost: %s", exc)
        finally:
            for sub in self._attached.values():
                sub.close()
            await trio.aclose_forcefully(self._stream)

    async def _read_requests(self) -> None:
        decoder = FrameDecoder(
            max_frame_size=self._daemon.config.max_frame_size, accept=REQUEST_TYPES
        )
        while True:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
            decoder.receive_data(data)
            while True:
                try:
                    message = decoder.next_message()
                except PtyProtocolError as exc:
                    log.info("bad frame from a client: %s", exc)
                    self._daemon._count("bad_frames")
                    await self._send(encode(Error(exc.code.value, str(exc), id=exc.request_id)))
                    if exc.fatal:
                        return
                    continue
                if message is NEED_DATA:
                    break
                if isinstance(message, ConnectionClosed):
                    return
                await self._dispatch(message)  # type: ignore[arg-type]
            if not data:
                return

    async def _dispatch(self, request: Request) -> None:
        session_id = getattr(request, "session", None)
        try:
            reply = await self._answer(request)
        except SessionError as exc:
            reply = Error(exc.code.value, str(exc), session=session_id, id=request.id)
        if reply is not None:
            await self._send(encode(reply))

    async def _answer(self, request: Request) -> Message | None:
        daemon = self._daemon
        ok = Ok(id=request.id) if request.id is not None else None
        match request:
            case Input(session=ident, data=data):
                await daemon._session(ident).write(data)
                return ok
            case Create():
                session = await daemon._create(request)
                return Created(session.id, session.pid, id=request.id)
            case Attach(session=ident):
                self._attach(daemon._session(ident))
                return ok
            case Detach(session=ident):
                sub = self._attached.pop(ident, None)
                if sub is None:
                    raise SessionError(
                        f"this connection is not attached to session {ident}",
                        ErrorCode.NOT_ATTACHED,
                    )
                sub.close()
                return ok
            case Resize(session=ident, cols=cols, rows=rows):
                daemon._session(ident).resize(cols, rows)
                return ok
            case Kill(session=ident):
                daemon._session(ident).kill()
                return ok
            case Signal(session=ident, signal=number):
                daemon._session(ident).signal(number)
                return ok
            case List():
                return Sessions(tuple(s.info() for s in daemon._sessions.values()), id=request.id)
            case Ack():
                return ok
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _attach(self, session: Session) -> None:
        if session.id in self._attached:
            return
        # subscribe and snapshot with no checkpoint between: the snapshot covers every byte
        # before the subscription, the subscription every byte after
        ident = session.id
        sock = self._stream.socket
        direct = self._direct
        partial = self._partial
        send_lock = self._send_lock

        def deliver(frame: bytes) -> bytes | None:
            # from the reactor, when nothing is queued for this subscriber: write it now if
            # no other send is under way (which would interleave), else queue it
            if ident not in direct or send_lock.locked():
                return frame
            try:
                written = os.write(sock.fileno(), frame)
            except OSError:  # EAGAIN (full), or a broken socket the forwarder will see
                return frame
            if written == len(frame):
                return None
            partial.add(ident)
            return frame[written:]

        sub = session.output.subscribe(
            on_overflow=lambda: self._overflowed(session),
            on_pressure=self._pressured,
            deliver=deliver,
        )
        snapshot = session.screen.snapshot()
        self._attached[session.id] = sub
        session.last_attached = time.time()
        assert self._nursery is not None
        self._nursery.start_soon(self._forward, session, sub, snapshot)

    def _pressured(self, level: PressureLevel, raised: bool, dropped: int) -> None:
        # counted as the queue fills: a client that never reads again is counted too (the
        # notice itself reaches it with the next output it reads)
        if raised:
            self._daemon._count(f"{level.value}_warnings")
        if dropped:
            self._daemon._count("chunks_dropped", dropped)

    def _overflowed(self, session: Session) -> None:
        self._daemon._count("disconnects")
        log.warning(
            "client fell %d chunks behind on session %d: disconnecting it (auto-disconnect)",
            self._daemon.config.max_queue_size,
            session.id,
        )
        self._scope.cancel()

    async def _forward(self, session: Session, sub: Subscription[bytes], snapshot: bytes) -> None:
        ident = session.id
        try:
            try:
                if snapshot:
                    await self._send(encode_output(ident, snapshot))
                self._direct.add(ident)
                await self._pump(ident, sub)
            finally:
                self._direct.discard(ident)
                self._partial.discard(ident)
                detached = self._attached.get(ident) is not sub
                if not detached:
                    del self._attached[ident]
            if not detached and session.is_ended:
                await self._send(encode(Exit(ident, session.exit_code, session.exit_signal)))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("session %d: client went away: %s", ident, exc)
            self._scope.cancel()

    async def _pump(self, ident: int, sub: Subscription[bytes]) -> None:
        """Send the subscription's output, batched, until the session ends or it is closed."""
        while True:
            try:
                chunk = await sub.receive()
            except trio.EndOfChannel:
                return
            except SubscriberOverflowError:
                return  # _overflowed is closing the connection
            batch = [chunk]
            size = len(chunk)
            while size < _BATCH_BYTES:
                try:
                    chunk = sub.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, SubscriberOverflowError):
                    break  # a closed queue is seen again by the next receive
                batch.append(chunk)
                size += len(chunk)
            # the rest of a frame written in part comes first, whole, before any warning
            head = batch.pop(0) if ident in self._partial else b""
            self._partial.discard(ident)
            frames = b"".join(batch)  # each chunk is an output frame already
            warnings = b""
            while (pressure := sub.take_pressure()) is not None:  # yellow, then red
                warning = BackpressureWarning(
                    ident, pressure.queue_size, Level(pressure.level.value), pressure.dropped
                )
                warnings += encode(warning)
            await self._send(head + warnings + frames if warnings or head else frames)


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
