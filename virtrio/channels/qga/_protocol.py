"""The sans-I/O guest-agent core: numbered commands out, replies in, and resynchronisation.

qemu-ga answers commands in order on one byte stream that may hold leftovers of an earlier
client (a half-read reply, a half-written request). ``guest-sync-delimited`` cleans both
directions: the request is preceded by ``0xFF`` (which resets qemu-ga's parser) and the reply is
preceded by ``0xFF`` (so the client drops whatever unfinished bytes came before it).

A new connection starts out of sync: until the first ``0xFF`` arrives, every byte is a previous
client's leftover (complete lines or not, JSON or not: qga/qapi-schema.json says all of it is to
be ignored until the sync reply) and is discarded unread. Later markers, once in sync, drop only
the unfinished message before them: complete replies there answer this client's own earlier
calls, which their ids still match.

The core keeps the contract of :mod:`virtrio.channels._sansio`: a clean end of input is a
:class:`ConnectionClosed` event, an error is raised again by every later call, and a command
once the stream has ended or failed raises :class:`QgaLocalProtocolError`.
"""

from __future__ import annotations

import logging
from typing import Any

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
    "QgaCommandError",
    "QgaError",
    "QgaLocalProtocolError",
    "QgaProtocol",
    "QgaProtocolError",
]

log = logging.getLogger(__name__)


class QgaError(VirtrioError):
    """Base of the guest-agent errors (each is also one of the generic classes of
    :mod:`virtrio.errors`)."""


class QgaProtocolError(QgaError, ProtocolError):
    """The guest agent sent something that is not a valid reply."""


class QgaLocalProtocolError(QgaError, LocalProtocolError):
    """We asked for something the connection's state forbids (a command after the end)."""


class QgaCommandError(QgaError, CommandError):
    """The guest agent answered a command with an error."""


class QgaProtocol:
    """The guest-agent protocol without I/O (see the module docstring).

    :meth:`next_event` returns :class:`~virtrio.channels._jsonstream.Reply` objects,
    :class:`~virtrio.channels._sansio.ConnectionClosed` once at a clean end of input, or
    ``NEED_DATA``. Replies without an id answer no request of ours (a previous client's): they
    are dropped.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._decoder = JsonStreamDecoder(max_message_size=max_message_size)
        self._next_id = 0
        self._error = ErrorState()
        self._in_sync = False  # no 0xFF seen yet: what arrives is stale (module docstring)

    @property
    def error(self) -> BaseException | None:
        """The error the connection failed with, if it did."""
        return self._error.error

    @property
    def is_closed(self) -> bool:
        """Whether the end of input was received (or the connection failed)."""
        return self._decoder.eof or self._error.failed

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the agent (``b""`` at end of stream); before the first ``0xFF``
        they are discarded.

        Raises:
            QgaLocalProtocolError: bytes after the end of the stream.
        """
        if data and self._decoder.eof:
            raise QgaLocalProtocolError("guest-agent data received after the end of the stream")
        if data and not self._in_sync:
            marker = data.find(SYNC_PREFIX)
            if marker < 0:
                return
            self._in_sync = True
            data = data[marker:]
        self._decoder.receive_data(data)

    def next_event(self) -> Reply | ConnectionClosed | NeedData:
        """The next reply, or ``NEED_DATA``.

        Raises:
            QgaProtocolError: the agent sent something other than a reply; raised again by
                every later call.
        """
        self._error.check()
        try:
            return self._next()
        except ProtocolError as exc:
            error = exc if isinstance(exc, QgaProtocolError) else QgaProtocolError(str(exc))
            self._error.fail(error.with_traceback(None))

    def _next(self) -> Reply | ConnectionClosed | NeedData:
        while True:
            message = self._decoder.next_message()
            if message is NEED_DATA or isinstance(message, ConnectionClosed):
                return message
            assert isinstance(message, dict)
            if "id" not in message:
                log.debug("guest agent: dropping a reply without id: %.100r", message)
                continue
            if "return" in message:
                return Reply(message["id"], True, message["return"])
            reply = error_reply(message["id"], message.get("error"))
            if reply is not None:
                return reply
            raise QgaProtocolError(f"unexpected guest-agent message {message!r:.120}")

    def send_command(
        self, command: str, arguments: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """Number ``command`` and encode it; returns ``(id, bytes to send)``.

        Raises:
            QgaLocalProtocolError: the stream has ended or failed.
        """
        self._check_open(command)
        self._next_id += 1
        message: dict[str, Any] = {"execute": command, "id": self._next_id}
        if arguments:
            message["arguments"] = arguments
        return self._next_id, encode_message(message)

    def _check_open(self, command: str) -> None:
        if self._error.failed:
            raise QgaLocalProtocolError(
                f"cannot send guest-agent command {command!r}: the connection failed:"
                f" {self._error.error}"
            )
        if self._decoder.eof:
            raise QgaLocalProtocolError(
                f"cannot send guest-agent command {command!r}: the connection is closed"
            )

    def sync_token(self) -> int:
        """A fresh token for ``guest-sync-delimited`` (the agent echoes it back)."""
        self._next_id += 1
        return self._next_id


#: What precedes a ``guest-sync-delimited`` request on the wire.
SYNC_PREFIX = b"\xff"
