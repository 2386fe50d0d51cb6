"""The sans-I/O QMP core: bytes in, greeting/replies/events out; commands in, bytes out.

A QMP connection goes through four states, all in :data:`TRANSITIONS` (what may be sent in
each is :data:`SENDABLE`)::

    AWAITING_GREETING --greeting--> NEGOTIATING --qmp_capabilities answered--> READY
            (every state) --end of input--> CLOSED      (every state) --bad input--> ERROR

QEMU sends the greeting first, answers only ``qmp_capabilities`` while negotiating and emits
events only once it has taken ``qmp_capabilities`` (an event may come just before its reply);
the core holds both sides to that, with one exception: an event may come before the greeting.
QEMU leaves a monitor in command mode when its client disconnects and resets it only once it
handles the next client's connection, so an event emitted in between (the previous client's
``cont`` has its RESUME) goes to the new client first. The core delivers it (nobody else got
it) and still waits for the greeting. It keeps the contract of
:mod:`virtrio.channels._sansio`: a clean end of input is a :class:`ConnectionClosed` event, an
error is raised again by every later call, and a command the state forbids raises
:class:`QmpLocalProtocolError`.

>>> qmp = QmpProtocol()
>>> qmp.receive_data(b'{"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0}},'
...                  b' "capabilities": []}}\\r\\n')
>>> qmp.next_event()
QmpGreeting(version=QemuVersion(major=8, minor=2, micro=0, package=''), capabilities=())
>>> ident, wire = qmp.send_command("qmp_capabilities")
>>> qmp.receive_data(b'{"return": {}, "id": %d}\\r\\n' % ident)
>>> qmp.next_event(), qmp.state
(Reply(id=1, ok=True, value={}, error_class='', desc=''), <QmpState.READY: 'ready'>)
"""

from __future__ import annotations

import enum
import heapq
from typing import Any, Final

import attrs

from virtrio.channels._jsonstream import (
    DEFAULT_MAX_MESSAGE_SIZE,
    NEED_DATA,
    ConnectionClosed,
    JsonStreamDecoder,
    NeedData,
    Reply,
    encode_message,
    error_reply,
)
from virtrio.channels._sansio import ErrorState
from virtrio.errors import CommandError, LocalProtocolError, ProtocolError, VirtrioError

__all__ = [
    "TRANSITIONS",
    "QemuVersion",
    "QmpCommandError",
    "QmpError",
    "QmpEvent",
    "QmpGreeting",
    "QmpLocalProtocolError",
    "QmpProtocol",
    "QmpProtocolError",
    "QmpState",
    "SENDABLE",
]


class QmpError(VirtrioError):
    """Base of the QMP errors (a QMP error is also one of the generic classes of
    :mod:`virtrio.errors`: a protocol, local-protocol or command error)."""


class QmpProtocolError(QmpError, ProtocolError):
    """QEMU sent something that is not valid QMP."""


class QmpLocalProtocolError(QmpError, LocalProtocolError):
    """We asked for something the connection's state forbids (a command before the greeting,
    anything but ``qmp_capabilities`` while negotiating, anything once closed or failed)."""


class QmpCommandError(QmpError, CommandError):
    """QEMU answered a command with an error (``error_class`` is QMP's ``class``)."""


class QmpState(enum.Enum):
    """Where a QMP connection is (see :data:`TRANSITIONS`)."""

    AWAITING_GREETING = "awaiting greeting"
    NEGOTIATING = "negotiating"
    READY = "ready"
    CLOSED = "closed"
    ERROR = "error"


_NEGOTIATION: Final = "qmp_capabilities"

#: Every state, what may arrive in it, and the state each arrival leads to ("negotiated" is
#: the success reply to ``qmp_capabilities``). Anything else from the peer is a protocol error;
#: a protocol error, in any state, leads to ERROR.
TRANSITIONS: Final[dict[QmpState, dict[str, QmpState]]] = {
    QmpState.AWAITING_GREETING: {
        "greeting": QmpState.NEGOTIATING,
        # meant for the previous client of the monitor (see the module docstring)
        "event before the greeting": QmpState.AWAITING_GREETING,
        "closed": QmpState.CLOSED,
    },
    QmpState.NEGOTIATING: {
        "reply": QmpState.NEGOTIATING,  # an error reply to qmp_capabilities: try again
        "negotiated": QmpState.READY,
        # QEMU leaves negotiation mode as it runs qmp_capabilities, before its reply is
        # written: an event may come between the two
        "event after qmp_capabilities": QmpState.NEGOTIATING,
        "closed": QmpState.CLOSED,
    },
    QmpState.READY: {
        "reply": QmpState.READY,
        "event": QmpState.READY,
        "closed": QmpState.CLOSED,
    },
    QmpState.CLOSED: {},
    QmpState.ERROR: {},
}

#: The commands we may send in each state (None: any). A state not listed allows none.
SENDABLE: Final[dict[QmpState, frozenset[str] | None]] = {
    QmpState.NEGOTIATING: frozenset({_NEGOTIATION}),
    QmpState.READY: None,
}


@attrs.frozen
class QemuVersion:
    """QEMU's version, from the greeting or ``query-version``."""

    major: int
    minor: int
    micro: int
    package: str = ""

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.micro}"

    @classmethod
    def from_qmp(cls, value: dict[str, Any]) -> QemuVersion:
        """Build from QMP's ``{"qemu": {"major": ..}, "package": ..}`` object."""
        try:
            q = value["qemu"]
            return cls(
                int(q["major"]), int(q["minor"]), int(q["micro"]), str(value.get("package", ""))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QmpProtocolError(f"malformed QMP version object {value!r}") from exc


@attrs.frozen
class QmpGreeting:
    """The first message QEMU sends on a QMP connection."""

    version: QemuVersion
    capabilities: tuple[str, ...]


@attrs.frozen
class QmpEvent:
    """An asynchronous event (``STOP``, ``SHUTDOWN``, ...) with its data and QEMU's timestamp."""

    name: str
    data: dict[str, Any]
    #: Seconds since the epoch, from QEMU's ``timestamp`` member.
    timestamp: float


class QmpProtocol:
    """QMP without I/O (see the module docstring for its states).

    Feed bytes with :meth:`receive_data`; :meth:`next_event` returns the
    :class:`QmpGreeting` first, then :class:`~virtrio.channels._jsonstream.Reply` and
    :class:`QmpEvent` objects, :class:`~virtrio.channels._sansio.ConnectionClosed` once at a
    clean end of input, or ``NEED_DATA``. :meth:`send_command` numbers a command and encodes it;
    sending ``qmp_capabilities`` while :attr:`state` is NEGOTIATING is the negotiation, and its
    success reply makes the connection READY.

    Ids are kept small: the smallest id whose reply has come numbers the next command, so a
    client with 16 callers never writes more than two digits. QEMU (7.2) reads its monitor one
    byte per system call, about seven system calls per byte with its wake-ups, so every byte of
    a command is CPU that QEMU spends. An id is never handed out again while its reply may
    still come (a caller that gave up after sending leaves its id taken until the late reply
    arrives); one whose command was never sent comes back with :meth:`release`.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._decoder = JsonStreamDecoder(max_message_size=max_message_size)
        self._next_id = 0  # the highest id handed out so far
        self._owed: set[int] = set()  # ids sent (or about to be) whose reply has not come
        self._free: list[int] = []  # a heap of ids whose reply came: handed out again first
        self._state = QmpState.AWAITING_GREETING
        self._negotiation: int | None = None  # the id of qmp_capabilities while it is pending
        self._error = ErrorState()
        #: The greeting, once received.
        self.greeting: QmpGreeting | None = None

    @property
    def state(self) -> QmpState:
        """Where the connection is."""
        return self._state

    @property
    def error(self) -> BaseException | None:
        """The error that put the connection in state ERROR, if it is there."""
        return self._error.error

    @property
    def unanswered(self) -> frozenset[int]:
        """The ids handed out whose reply has not come (nor been given back by
        :meth:`release`): none of them numbers another command meanwhile."""
        return frozenset(self._owed)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes received from QEMU (``b""`` at end of stream).

        Raises:
            QmpLocalProtocolError: bytes after the end of the stream.
        """
        if data and self._decoder.eof:
            raise QmpLocalProtocolError("QMP data received after the end of the stream")
        self._decoder.receive_data(data)

    def next_event(self) -> QmpGreeting | Reply | QmpEvent | ConnectionClosed | NeedData:
        """The next event, or ``NEED_DATA``.

        Raises:
            QmpProtocolError: the peer broke the protocol (the message says how); raised again
                by every later call.
        """
        self._error.check()
        try:
            message = self._decoder.next_message()
            if message is NEED_DATA:
                return NEED_DATA
            if isinstance(message, ConnectionClosed):
                self._advance("closed")
                return message
            assert isinstance(message, dict)
            return self._receive(message)
        except ProtocolError as exc:
            self._state = QmpState.ERROR
            error = exc if isinstance(exc, QmpProtocolError) else QmpProtocolError(str(exc))
            self._error.fail(error.with_traceback(None))

    def _receive(self, message: dict[str, Any]) -> QmpGreeting | Reply | QmpEvent:
        if self._state is QmpState.AWAITING_GREETING:
            if "event" in message and "QMP" not in message:
                event = _event(message)
                self._advance("event before the greeting")
                return event
            greeting = self._greeting(message)
            self._advance("greeting")
            return greeting
        if "return" in message:
            reply = Reply(self._id(message), True, message["return"])
        elif "error" in message:
            error = error_reply(self._id(message), message["error"])
            if error is None:
                raise QmpProtocolError(f"malformed QMP error reply {_short(message)}")
            reply = error
        elif "event" in message:
            event = _event(message)
            early = self._state is QmpState.NEGOTIATING and self._negotiation is not None
            self._advance("event after qmp_capabilities" if early else "event")
            return event
        else:
            raise QmpProtocolError(f"unexpected QMP message {_short(message)}")
        if self._negotiation is not None and reply.id == self._negotiation:
            self._negotiation = None
            self._advance("negotiated" if reply.ok else "reply")
        else:
            self._advance("reply")
        return reply

    def _advance(self, arrival: str) -> None:
        try:
            self._state = TRANSITIONS[self._state][arrival]
        except KeyError:
            raise QmpProtocolError(
                f"unexpected QMP {arrival} while the connection is {self._state.value}"
            ) from None

    def _greeting(self, message: dict[str, Any]) -> QmpGreeting:
        body = message.get("QMP")
        if not isinstance(body, dict):
            raise QmpProtocolError(f"expected the QMP greeting, got {_short(message)}")
        caps = body.get("capabilities", [])
        if not isinstance(caps, list):
            raise QmpProtocolError(f"malformed QMP greeting {_short(message)}")
        self.greeting = QmpGreeting(
            QemuVersion.from_qmp(body.get("version", {})), tuple(map(str, caps))
        )
        return self.greeting

    def _id(self, message: dict[str, Any]) -> Any:
        if "id" not in message:
            # We number every command, so a reply without an id answers nothing we sent
            # (e.g. QEMU could not parse a command): no caller can be told, so the stream is
            # no longer trustworthy.
            raise QmpProtocolError(f"QMP reply without an id: {_short(message)}")
        ident = message["id"]
        if type(ident) is int:
            self.release(ident)  # its one reply came: the id may number another command
        return ident

    def release(self, ident: int) -> None:
        """Give back the id of a command that was never sent (its caller gave up first), so
        it numbers another command. An id whose command was sent comes back with its reply;
        this changes nothing for it, nor for an id not handed out."""
        if ident in self._owed:
            self._owed.remove(ident)
            heapq.heappush(self._free, ident)

    def send_command(
        self, command: str, arguments: dict[str, Any] | None = None, *, oob: bool = False
    ) -> tuple[int, bytes]:
        """Number ``command`` and encode it; returns ``(id, bytes to send)``.

        Raises:
            QmpLocalProtocolError: the state forbids ``command`` (see :data:`SENDABLE`), or a
                negotiation is already pending.
        """
        state = self._state
        if state not in SENDABLE:
            why = f": {self._error.error}" if state is QmpState.ERROR else ""
            raise QmpLocalProtocolError(
                f"cannot send QMP command {command!r}: the connection is {state.value}{why}"
            )
        allowed = SENDABLE[state]
        if allowed is not None and command not in allowed:
            raise QmpLocalProtocolError(
                f"cannot send QMP command {command!r} while negotiating capabilities"
                " (only qmp_capabilities)"
            )
        if state is QmpState.NEGOTIATING and self._negotiation is not None:
            raise QmpLocalProtocolError("a qmp_capabilities negotiation is already pending")
        if self._free:
            ident = heapq.heappop(self._free)
        else:
            ident = self._next_id = self._next_id + 1
        self._owed.add(ident)
        if state is QmpState.NEGOTIATING:
            self._negotiation = ident
        message: dict[str, Any] = {"exec-oob" if oob else "execute": command, "id": ident}
        if arguments:
            message["arguments"] = arguments
        return ident, encode_message(message)


def _event(message: dict[str, Any]) -> QmpEvent:
    name = message["event"]
    data = message.get("data", {})
    stamp = message.get("timestamp", {})
    if not isinstance(name, str) or not isinstance(data, dict) or not isinstance(stamp, dict):
        raise QmpProtocolError(f"malformed QMP event {_short(message)}")
    try:
        timestamp = int(stamp.get("seconds", 0)) + int(stamp.get("microseconds", 0)) / 1e6
    except (TypeError, ValueError):
        raise QmpProtocolError(f"malformed QMP event timestamp {stamp!r}") from None
    return QmpEvent(name, data, timestamp)


def _short(message: object, limit: int = 120) -> str:
    text = repr(message)
    return text if len(text) <= limit else text[:limit] + "..."
