"""The client SDK of the terminal daemon: :func:`open_pty_client`.

Every request carries an ``id`` and waits for its reply (``created``, ``sessions``, ``ok`` or
``error``), so a refused request raises :class:`PtyRequestError` at its call site; any number of
tasks may call at once. Session output arrives as events on :meth:`PtyClient.events`::

    async with open_pty_client("unix:/run/pty.sock") as client:  # or a plain path
        sid = await client.create(command="/bin/bash", cols=120, rows=40)
        await client.attach(sid)            # the current screen first, then live output
        await client.input(sid, b"ls\\n")
        with client.events() as events:
            async for event in events:
                match event:
                    case Output(session=s, data=data): ...
                    case BackpressureWarning(level=Level.RED): ...   # this client is slow
                    case Exit(code=code, signal=signal): break

The event queue is bounded (``max_queue``): a program that stops iterating stops this client
reading its socket, which is what makes the daemon warn (yellow, then red) and, if so
configured, disconnect it — slow consumers never cost unbounded memory on either side.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from virtrio.channels import Address, open_stream, parse_address
from virtrio.channels._correlator import Correlator
from virtrio.errors import (
    CommandError,
    ConfigError,
    ConnectionLostError,
    VirtrioError,
)
from virtrio.primitives import open_service_nursery
from virtrio.primitives._deprecated import warn_renamed

from ._codec import encode, encode_input
from ._errors import PtyError
from ._inbound import Inbound, PtyEvent
from ._messages import (
    Attach,
    Create,
    Created,
    CreateOptions,
    Detach,
    Error,
    Input,
    Kill,
    List,
    Message,
    Request,
    Resize,
    SessionInfo,
    Sessions,
    Signal,
)
from ._queue import EventQueue

__all__ = [
    "PtyClient",
    "PtyEvent",
    "PtyEvents",
    "PtyRequestError",
    "default_socket_path",
    "open_pty_client",
]


def default_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$RUST_PTY_SOCKET_PATH``, else ``$HOME/.vibest/pty/socket`` (the seed's default)."""
    env = os.environ if environ is None else environ
    if path := env.get("RUST_PTY_SOCKET_PATH"):
        return Path(path)
    return Path(env.get("HOME") or Path.home()) / ".vibest" / "pty" / "socket"


#: Default busy-poll budget for an echo after input (``open_pty_client(spin=...)``), seconds.
DEFAULT_SPIN = 300e-6

#: ``input(wait=False)`` is a schedule point every this many calls (see :meth:`PtyClient.input`).
_SCHEDULE_EVERY = 16


class PtyRequestError(PtyError, CommandError):
    """The daemon refused a request: its ``error`` reply (a remote error, like a QMP error
    reply): ``error_class`` is the error code, ``desc`` the daemon's message, ``command`` the
    request's type.

    Attributes:
        code: the error code (an :class:`~virtrio.channels.pty.ErrorCode` value).
        session: the session the request named, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        session: int | None = None,
        command: str = "",
        desc: str = "",
    ) -> None:
        VirtrioError.__init__(self, message)
        self.error_class = code
        self.desc = desc or message
        self.command = command
        self.code = code
        self.session = session


class PtyEvents:
    """A subscription to a :class:`PtyClient`'s events, from ``with client.events() as events``
    (an async iterator of events, like every subscription in virtrio)."""

    def __init__(self, client: PtyClient, max_queue: int | None = None) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue!r}")
        self._client = client
        self._max_queue = max_queue
        self._restore: int | None = None

    def __enter__(self) -> PtyEvents:
        if self._max_queue is not None:
            self._restore = self._client._events.limit
            self._client._events.limit = self._max_queue
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Give the queue its bound back; what is queued stays queued."""
        if self._restore is not None:
            self._client._events.limit, self._restore = self._restore, None

    def __aiter__(self) -> PtyEvents:
        return self

    async def __anext__(self) -> PtyEvent:
        try:
            return await self._client._inbound.next_event()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def receive(self) -> PtyEvent:
        """The next event.

        Raises:
            ConnectionLostError: the connection closed and every event was received.
        """
        try:
            return await self._client._inbound.next_event()
        except trio.EndOfChannel:
            raise self._client._lost_error() from None


class PtyClient:
    """A connection to the daemon; made by :func:`open_pty_client`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        *,
        call_timeout: float,
        max_queue: int,
        spin: float = 0.0,
    ) -> None:
        self._stream = stream
        self.address = address
        #: The deadline of a request that passes ``timeout=None``.
        self.call_timeout = call_timeout
        self._ids = itertools.count(1)
        self._calls: Correlator[Message] = Correlator(stream, name="pty daemon", address=address)
        self._events: EventQueue[PtyEvent] = EventQueue(max_queue)
        self._unscheduled = 0  # input(wait=False) calls since the last schedule point in one
        self._inbound = Inbound(stream, self._calls, self._events, lose=self._lose, spin=spin)

    @property
    def closed_reason(self) -> BaseException | None:
        """Why the connection ended (None while it is open)."""
        return self._calls.closed_reason

    # ---- requests ----------------------------------------------------------------------------

    async def create(
        self,
        *,
        command: str | None = None,
        args: Sequence[str] = (),
        shell: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        cols: int = 80,
        rows: int = 24,
        console: str | Address | None = None,
        timeout: float | None = None,
    ) -> int:
        """Start a session and return its id: ``command`` (or ``shell``, or the daemon's default
        shell) with ``args`` on a new PTY — or, with ``console``, a VM serial console socket.

        Raises:
            PtyRequestError: the daemon refused (too many sessions, cannot start it, ...).
            ConnectionLostError, VirtrioTimeoutError: as every request.
        """
        options = CreateOptions(
            shell=shell,
            command=command,
            args=tuple(args),
            env=dict(env or {}),
            cwd=os.fspath(cwd) if cwd is not None else None,
            cols=cols,
            rows=rows,
            console=str(console) if console is not None else None,
        )
        reply = await self._request(Create(options, id=self._next_id()), timeout)
        assert isinstance(reply, Created)
        return reply.session

    async def attach(self, session: int, *, timeout: float | None = None) -> None:
        """Receive the session's events: its current screen as a first :class:`Output`, then
        everything it prints, then its :class:`Exit`."""
        await self._request(Attach(session, id=self._next_id()), timeout)

    async def detach(self, session: int, *, timeout: float | None = None) -> None:
        """Stop receiving the session's events; it keeps running."""
        await self._request(Detach(session, id=self._next_id()), timeout)

    async def input(
        self, session: int, data: bytes | str, *, wait: bool = True, timeout: float | None = None
    ) -> None:
        """Type ``data`` (str is sent as UTF-8) into the session.

        With ``wait=False`` it returns once the bytes are on the socket, without waiting for the
        daemon's answer (keystrokes: one trip less); a failure then arrives as an
        :class:`~virtrio.channels.pty.Error` event. It is then a cancel point but only every
        :data:`_SCHEDULE_EVERY` th call a schedule point (unless it had to wait for room): a
        keystroke is followed by the wait for its echo, which is one, and a pass through the
        scheduler is a good part of an echo's cost.
        """
        raw = data.encode() if isinstance(data, str) else bytes(data)
        self._inbound.expect_echo()
        if wait:
            await self._request(Input(session, raw, id=self._next_id()), timeout)
        elif self.closed_reason is not None:
            raise self._lost_error()
        else:
            timeout = self.call_timeout if timeout is None else timeout
            self._unscheduled = (self._unscheduled + 1) % _SCHEDULE_EVERY
            await self._calls.send(
                encode_input(session, raw),
                deadline=trio.current_time() + timeout,
                schedule=not self._unscheduled,
            )

    async def resize(
        self, session: int, cols: int, rows: int, *, timeout: float | None = None
    ) -> None:
        """Set the session's terminal size (its program gets SIGWINCH)."""
        await self._request(Resize(session, cols, rows, id=self._next_id()), timeout)

    async def signal(
        self, session: int, signal: int | str, *, timeout: float | None = None
    ) -> None:
        """Send a signal (number or name) to the session's foreground process group."""
        await self._request(Signal(session, signal, id=self._next_id()), timeout)

    async def kill(self, session: int, *, timeout: float | None = None) -> None:
        """End the session (SIGKILL to its process group; a console is closed)."""
        await self._request(Kill(session, id=self._next_id()), timeout)

    async def list(self, *, timeout: float | None = None) -> tuple[SessionInfo, ...]:
        """The daemon's sessions."""
        reply = await self._request(List(id=self._next_id()), timeout)
        assert isinstance(reply, Sessions)
        return reply.sessions

    def events(self, *, max_queue: int | None = None) -> PtyEvents:
        """Output, exits, backpressure warnings and unsolicited errors of attached sessions, in
        order: ``with client.events() as events: async for event in events``.

        The client has one bounded event queue (``max_queue=`` of :func:`open_pty_client`),
        which is what back-pressures the socket: nothing is dropped, a slow reader slows the
        client down (and the daemon warns it). ``max_queue=`` here sets that bound while the
        block is open (None: the client's). Leaving the block loses nothing, and entering
        again goes on where it stopped. Iteration ends when the connection closes (see
        :attr:`closed_reason`); :meth:`PtyEvents.receive` raises instead.
        """
        return PtyEvents(self, max_queue)

    @property
    def is_connected(self) -> bool:
        """True until the connection is lost or closed."""
        return self.closed_reason is None

    # ---- machinery ---------------------------------------------------------------------------

    def _next_id(self) -> int:
        return next(self._ids)

    def _lost_error(self) -> ConnectionLostError:
        return self._calls.lost_error()

    async def _request(self, request: Request, timeout: float | None) -> Message:
        timeout = self.call_timeout if timeout is None else timeout
        ident = request.id
        assert ident is not None
        self._inbound.wake_reader()  # (a subscriber that held the socket gave it back)
        reply = await self._calls.call(
            ident, encode(request), what=f"request {request.TYPE!r}", timeout=timeout
        )
        if isinstance(reply, Error):
            raise PtyRequestError(
                f"{request.TYPE} refused by the pty daemon: {reply.message}",
                code=reply.code,
                session=reply.session,
                command=request.TYPE,
                desc=reply.message,
            )
        return reply

    async def _send(self, data: bytes) -> None:
        await self._calls.send(data)

    def _lose(self, reason: ConnectionLostError) -> None:
        reason.address = self.address
        self._calls.lose(reason)

    async def wait_closed(self) -> None:
        """Return once the connection has closed (see :attr:`closed_reason`)."""
        await self._calls.wait_closed()


@asynccontextmanager
async def open_pty_client(
    address: str | os.PathLike[str] | Address | None = None,
    *,
    connect_timeout: float = 10.0,
    call_timeout: float = 10.0,
    max_queue: int = 1024,
    max_events: int | None = None,
    spin: float = DEFAULT_SPIN,
) -> AsyncIterator[PtyClient]:
    """Connect to the daemon at ``address`` (default: ``$RUST_PTY_SOCKET_PATH``, else
    ``~/.vibest/pty/socket``).

    Args:
        address: ``unix:/path`` (or an :class:`~virtrio.channels.Address`), or a plain path
            (``~`` is expanded; a path with ``://`` in it must be given as ``unix:``).
        connect_timeout: for connecting.
        call_timeout: the deadline of a request that passes ``timeout=None``.
        max_queue: events buffered before this client stops reading its socket.
        max_events: deprecated name of ``max_queue``.
        spin: the most a subscriber busy-polls the socket, after :meth:`PtyClient.input`, for
            the echo before it parks (seconds; 0: never). The daemon forwards an echo within
            tens of microseconds, and a wake-up costs about as much CPU again, and more
            latency. The window adapts (:class:`~virtrio.primitives.SpinPolicy`): a few times
            the recent echoes' latency, up to ``spin``, and none (a probe every 16th input)
            while input brings no prompt echo. It never polls while another task of the
            program is ready to run, nor past the next timer or the enclosing deadline; while
            it polls, the event loop runs nothing else (at most ``spin`` per input).

    Raises:
        ConfigError: ``address`` is an address of another scheme than ``unix:``, or
            ``spin`` is negative or not finite.
        ConnectError: no daemon listens there.
    """
    if max_events is not None:
        warn_renamed("open_pty_client", "max_events", "max_queue", stacklevel=4)
        max_queue = max_events
    if not 0 <= spin < math.inf:  # (NaN fails too)
        raise ConfigError(f"spin must be a finite number of seconds >= 0, got {spin}")
    addr = _pty_address(address)
    stream = await open_stream(addr, connect_timeout=connect_timeout)
    client = PtyClient(
        stream, str(addr), call_timeout=call_timeout, max_queue=max(1, max_queue), spin=spin
    )
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(client._inbound.run_reader)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


def _pty_address(address: str | os.PathLike[str] | Address | None) -> Address:
    """``unix:/path`` (any ``scheme://`` too, to refuse it clearly) or an Address is parsed as
    such; anything else is a filesystem path."""
    if isinstance(address, Address):
        parsed = address
    elif isinstance(address, str) and (address.startswith("unix:") or "://" in address):
        parsed = parse_address(address)
    else:
        text = os.fspath(address or default_socket_path())
        return Address.unix(os.path.expanduser(text))
    if parsed.scheme != "unix":
        raise ConfigError(f"the pty daemon listens on a unix: socket, not {parsed}")
    return parsed
