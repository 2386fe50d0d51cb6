"""The sans-I/O QMP core: bytes in, greeting/replies/events out; commands in, bytes out."""

from __future__ import annotations

from typing import Any

import attrs

from virtrio.channels._jsonstream import (
    DEFAULT_MAX_MESSAGE_SIZE,
    NEED_DATA,
    JsonStreamDecoder,
    NeedData,
    encode_message,
)
from virtrio.channels._rpc import Reply, error_reply
from virtrio.errors import CommandError, ProtocolError, VirtrioError

__all__ = [
    "QemuVersion",
    "QmpCommandError",
    "QmpError",
    "QmpEvent",
    "QmpGreeting",
    "QmpProtocol",
    "QmpProtocolError",
]


class QmpError(VirtrioError):
    """Base of the QMP errors (a QMP error is also one of the generic classes of
    :mod:`virtrio.errors`: a protocol, local-protocol or command error)."""


class QmpProtocolError(QmpError, ProtocolError):
    """QEMU sent something that is not valid QMP."""


class QmpCommandError(QmpError, CommandError):
    """QEMU answered a command with an error (``error_class`` is QMP's ``class``)."""


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
    """QMP without I/O.

    Feed bytes with :meth:`receive_data`; :meth:`next_event` returns the
    :class:`QmpGreeting` first, then :class:`~virtrio.channels._rpc.Reply` and
    :class:`QmpEvent` objects, or ``NEED_DATA``. :meth:`send_command` numbers a command and
    encodes it. Anything else from the peer raises :class:`QmpProtocolError`.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._decoder = JsonStreamDecoder(max_message_size=max_message_size)
        self._next_id = 0
        #: The greeting, once received.
        self.greeting: QmpGreeting | None = None

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes received from QEMU (``b""`` at end of stream)."""
        self._decoder.receive_data(data)

    def next_event(self) -> QmpGreeting | Reply | QmpEvent | NeedData:
        """The next event, or ``NEED_DATA``.

        Raises:
            QmpProtocolError: the peer broke the protocol (the message says how).
        """
        try:
            message = self._decoder.next_message()
        except ProtocolError as exc:
            raise QmpProtocolError(str(exc)) from None
        if message is NEED_DATA:
            return NEED_DATA
        assert isinstance(message, dict)
        if self.greeting is None:
            return self._greeting(message)
        if "return" in message:
            return Reply(self._id(message), True, message["return"])
        if "error" in message:
            reply = error_reply(self._id(message), message["error"])
            if reply is None:
                raise QmpProtocolError(f"malformed QMP error reply {message!r}")
            return reply
        if "event" in message:
            return _event(message)
        raise QmpProtocolError(f"unexpected QMP message {_short(message)}")

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

    @staticmethod
    def _id(message: dict[str, Any]) -> Any:
        if "id" not in message:
            # We number every command, so a reply without an id answers nothing we sent
            # (e.g. QEMU could not parse a command): no caller can be told, so the stream is
            # no longer trustworthy.
            raise QmpProtocolError(f"QMP reply without an id: {_short(message)}")
        return message["id"]

    def send_command(
        self, command: str, arguments: dict[str, Any] | None = None, *, oob: bool = False
    ) -> tuple[int, bytes]:
        """Number ``command`` and encode it; returns ``(id, bytes to send)``."""
        self._next_id += 1
        message: dict[str, Any] = {"exec-oob" if oob else "execute": command, "id": self._next_id}
        if arguments:
            message["arguments"] = arguments
        return self._next_id, encode_message(message)


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
