"""The messages of the terminal daemon's wire protocol (seed 003), as frozen attrs classes.

Each message is one MessagePack map on the wire whose ``type`` key names the variant in
snake_case (serde's internally tagged form, as the seed's SDK expects): ``{"type": "input",
"session": 1, "data": b"ls\\n"}``. The classes here are that map's fields; the codec in
:mod:`._codec` turns them into frames and back.

Requests (client → daemon): :class:`Create`, :class:`Attach`, :class:`Detach`, :class:`Input`,
:class:`Resize`, :class:`Kill`, :class:`Signal`, :class:`Ack`, :class:`List`.

Replies and events (daemon → client): :class:`Created`, :class:`Sessions`, :class:`Ok`,
:class:`Error` (replies, correlated by the optional request ``id``); :class:`Output`,
:class:`Exit`, :class:`BackpressureWarning` (events of an attached session).
"""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

__all__ = [
    "REQUEST_TYPES",
    "EVENT_TYPES",
    "Ack",
    "Attach",
    "BackpressureWarning",
    "Create",
    "CreateOptions",
    "Created",
    "Detach",
    "Error",
    "ErrorCode",
    "Event",
    "Exit",
    "Input",
    "Kill",
    "Level",
    "List",
    "Message",
    "Ok",
    "Output",
    "Request",
    "Resize",
    "SessionInfo",
    "Sessions",
    "Signal",
]


class Level(enum.Enum):
    """A backpressure warning's severity."""

    YELLOW = "yellow"  #: the subscriber's free queue room fell below the threshold
    RED = "red"  #: the subscriber's queue was full: output was dropped for it


class ErrorCode(enum.Enum):
    """The ``code`` of an :class:`Error` reply: what went wrong, for programs to act on."""

    FRAME_TOO_LARGE = "frame_too_large"  #: a length prefix over the limit (connection closed)
    TRUNCATED_FRAME = "truncated_frame"  #: the stream ended inside a frame
    INVALID_MSGPACK = "invalid_msgpack"  #: the payload is not one MessagePack value
    INVALID_MESSAGE = "invalid_message"  #: not a map, or a field missing or of the wrong type
    UNKNOWN_TYPE = "unknown_type"  #: ``type`` names no message
    UNEXPECTED_TYPE = "unexpected_type"  #: a known message the receiver does not accept
    UNKNOWN_SESSION = "unknown_session"  #: no session with that id
    NOT_ATTACHED = "not_attached"  #: detach from a session this connection is not attached to
    TOO_MANY_SESSIONS = "too_many_sessions"  #: the daemon's session limit is reached
    TOO_MANY_CONNECTIONS = "too_many_connections"  #: the daemon's connection limit (closed)
    SPAWN_FAILED = "spawn_failed"  #: the command could not be started or the console opened
    UNSUPPORTED = "unsupported"  #: e.g. a signal to a VM console session
    INVALID_ARGUMENT = "invalid_argument"  #: e.g. an unknown signal name or 0 columns


@attrs.frozen
class CreateOptions:
    """How to start a session (all optional).

    A local session runs ``command`` (or ``shell``; the daemon's ``$SHELL`` or ``/bin/sh`` by
    default) with ``args`` on a new PTY of ``cols`` by ``rows``, in ``cwd``, with ``env`` added to
    the daemon's environment. A session with ``console`` (an address such as
    ``unix:/run/vm1/serial.sock``) is a VM's serial console instead: its I/O is that socket.
    """

    shell: str | None = None
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    cols: int = 80
    rows: int = 24
    console: str | None = None


@attrs.frozen
class SessionInfo:
    """One session as :class:`Sessions` lists it."""

    session: int
    kind: str  #: ``"pty"`` or ``"console"``
    command: str  #: the program (or console address)
    pid: int | None
    cols: int
    rows: int
    created: float  #: Unix time
    last_attached: float | None  #: Unix time, None if never attached
    attached: int  #: subscribers now


class _Message:
    TYPE: ClassVar[str]


# ---- requests -------------------------------------------------------------------------------
# ``id`` (optional on every request): when given, the daemon answers with a reply carrying it
# (``created``/``sessions``/``ok``/``error``); without it, only ``created``, ``sessions`` and
# errors are sent — exactly what a client of the seed's daemon expects.


@attrs.frozen
class Create(_Message):
    """Start a session; answered by :class:`Created`."""

    TYPE: ClassVar[str] = "create"
    options: CreateOptions = attrs.field(factory=CreateOptions)
    id: int | None = None


@attrs.frozen
class Attach(_Message):
    """Subscribe this connection to a session: first its current screen, then live output."""

    TYPE: ClassVar[str] = "attach"
    session: int
    id: int | None = None


@attrs.frozen
class Detach(_Message):
    """Stop receiving a session's output (the session keeps running)."""

    TYPE: ClassVar[str] = "detach"
    session: int
    id: int | None = None


@attrs.frozen
class Input(_Message):
    """Bytes typed into a session."""

    TYPE: ClassVar[str] = "input"
    session: int
    data: bytes
    id: int | None = None


@attrs.frozen
class Resize(_Message):
    """Set a session's terminal size."""

    TYPE: ClassVar[str] = "resize"
    session: int
    cols: int
    rows: int
    id: int | None = None


@attrs.frozen
class Kill(_Message):
    """End a session: SIGKILL to its process group (a console session: close the socket)."""

    TYPE: ClassVar[str] = "kill"
    session: int
    id: int | None = None


@attrs.frozen
class Signal(_Message):
    """Send ``signal`` (a number or a name such as ``"SIGINT"``/``"INT"``) to the session's
    foreground process group."""

    TYPE: ClassVar[str] = "signal"
    session: int
    signal: int | str
    id: int | None = None


@attrs.frozen
class Ack(_Message):
    """Accepted for compatibility with the seed's older clients; does nothing."""

    TYPE: ClassVar[str] = "ack"
    session: int | None = None
    count: int | None = None
    id: int | None = None


@attrs.frozen
class List(_Message):
    """List the sessions; answered by :class:`Sessions`."""

    TYPE: ClassVar[str] = "list"
    id: int | None = None


# ---- replies and events ---------------------------------------------------------------------


@attrs.frozen
class Created(_Message):
    """The reply to :class:`Create`."""

    TYPE: ClassVar[str] = "created"
    session: int
    pid: int | None = None
    id: int | None = None


@attrs.frozen
class Sessions(_Message):
    """The reply to :class:`List`."""

    TYPE: ClassVar[str] = "sessions"
    sessions: tuple[SessionInfo, ...] = ()
    id: int | None = None


@attrs.frozen
class Ok(_Message):
    """Success of a request that carried an ``id`` and has no other reply."""

    TYPE: ClassVar[str] = "ok"
    id: int | None = None


@attrs.frozen
class Error(_Message):
    """A request failed or a frame was bad; ``code`` is an :class:`ErrorCode` value."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    session: int | None = None
    id: int | None = None


@attrs.frozen
class Output(_Message):
    """Terminal output of an attached session."""

    TYPE: ClassVar[str] = "output"
    session: int
    data: bytes


@attrs.frozen
class Exit(_Message):
    """An attached session ended, after all its output. ``code`` is the exit status when the
    process exited, ``signal`` the signal number when one killed it (the other is None)."""

    TYPE: ClassVar[str] = "exit"
    session: int
    code: int | None
    signal: int | None


@attrs.frozen
class BackpressureWarning(_Message):
    """This connection is falling behind on a session's output."""

    TYPE: ClassVar[str] = "backpressure_warning"
    session: int
    queue_size: int  #: output queued for this subscriber, in chunks of 8 KiB
    level: Level
    dropped: int = 0  #: 8 KiB chunks dropped for this subscriber since the last red warning


Request = Create | Attach | Detach | Input | Resize | Kill | Signal | Ack | List
Event = Created | Sessions | Ok | Error | Output | Exit | BackpressureWarning
Message = Request | Event

#: Message classes a daemon accepts.
REQUEST_TYPES: tuple[type[Message], ...] = (
    Create,
    Attach,
    Detach,
    Input,
    Resize,
    Kill,
    Signal,
    Ack,
    List,
)
#: Message classes a client accepts.
EVENT_TYPES: tuple[type[Message], ...] = (
    Created,
    Sessions,
    Ok,
    Error,
    Output,
    Exit,
    BackpressureWarning,
)
