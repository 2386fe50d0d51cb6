"""A sans-I/O codec for streams of JSON objects, shared by QMP and the guest agent.

Both peers write one JSON object per line (QEMU ends each with ``\\r\\n``, qemu-ga with ``\\n``)
and neither puts a raw newline inside one, so a message is a line. A ``0xFF`` byte — which never
occurs in UTF-8 JSON — is the guest agent's resynchronisation marker (``guest-sync-delimited``):
the unfinished message before it is discarded.

>>> decoder = JsonStreamDecoder()
>>> decoder.receive_data(b'{"return": {}}\\r\\n{"ev')
>>> decoder.next_message()
{'return': {}}
>>> decoder.next_message() is NEED_DATA
True

The decoder never holds more than ``max_message_size`` bytes of an unfinished message: beyond
that it raises :class:`JsonStreamError` instead of growing without bound. It keeps the contract
of :mod:`virtrio.channels._sansio`: end of input is a :class:`ConnectionClosed` (or an error
when it cuts a message short) and, once it has failed, it raises that error again.

:class:`Reply` is what both protocols make of an answer to a command.
"""

from __future__ import annotations

import json
from typing import Any, Final

import attrs

from virtrio.errors import LocalProtocolError, ProtocolError

from ._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "JsonStreamDecoder",
    "JsonStreamError",
    "NeedData",
    "Reply",
    "encode_message",
    "error_reply",
]

#: 64 MiB: room for the largest guest-file-read reply (48 MB of data, base64-encoded).
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 * 1024

_RESYNC = b"\xff"


class JsonStreamError(ProtocolError):
    """The peer sent something that is not a stream of JSON objects."""


@attrs.frozen
class Reply:
    """A reply to one command: its ``return`` value, or its ``error`` class and description."""

    id: Any
    ok: bool
    value: Any = None
    error_class: str = ""
    desc: str = ""


def error_reply(ident: Any, error: object) -> Reply | None:
    """The :class:`Reply` for an ``{"error": {"class": ..., "desc": ...}}`` member, or None if
    ``error`` is not such an object."""
    if not isinstance(error, dict):
        return None
    return Reply(ident, False, None, str(error.get("class", "")), str(error.get("desc", "")))


_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_DECODE = json.JSONDecoder().raw_decode
#: command name -> its JSON string, for the commands' fast path
_NAMES: dict[str, bytes] = {}


def encode_message(message: dict[str, Any]) -> bytes:
    """One message on the wire: compact JSON and a newline."""
    if len(message) == 2:
        # the hot shape, a command without arguments ({"execute": name, "id": n}): filled in
        # a template instead of walking the dict through the encoder
        name, ident = message.get("execute"), message.get("id")
        if type(name) is str and type(ident) is int:
            quoted = _NAMES.get(name)
            if quoted is None:
                quoted = _ENCODE(name).encode()
                if len(_NAMES) < 1024:
                    _NAMES[name] = quoted
            return b'{"execute":%b,"id":%d}\n' % (quoted, ident)
    return _ENCODE(message).encode() + b"\n"


class JsonStreamDecoder:
    """Splits received bytes into JSON objects; see the module docstring."""

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer already known to hold no newline
        self._eof = False
        self._closed_reported = False
        self._error = ErrorState()

    @property
    def eof(self) -> bool:
        """Whether end-of-stream was received (``receive_data(b"")``)."""
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buffer)

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed the stream. Bytes after a
        failure are dropped (the error stands).

        Raises:
            LocalProtocolError: bytes after the end of the stream (a bug in the caller).
        """
        if self._error.failed:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after the end of the stream")
        if _RESYNC in data:
            # Each marker drops the unfinished message before it; complete ones are kept (their
            # ids tell whether anyone still waits for them).
            *before, data = data.split(b"\xff")
            for part in before:
                self._buffer += part
                del self._buffer[self._buffer.rfind(b"\n") + 1 :]
            self._scanned = 0
        self._buffer += data

    def next_message(self) -> dict[str, Any] | ConnectionClosed | NeedData:
        """The next complete message, :class:`ConnectionClosed` once after a clean end of
        stream, or :data:`NEED_DATA`.

        Raises:
            JsonStreamError: a line is not a JSON object, an unfinished message exceeds
                ``max_message_size``, or the stream ended in the middle of a message; raised
                again by every later call.
        """
        self._error.check()
        try:
            return self._next()
        except JsonStreamError as exc:
            self._buffer.clear()
            self._error.fail(exc)

    def _next(self) -> dict[str, Any] | ConnectionClosed | NeedData:
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", self._scanned)
            if newline < 0:
                break
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            self._scanned = 0
            if not line.strip():
                continue
            if len(line) > self.max_message_size:
                raise JsonStreamError(
                    f"message of {len(line)} bytes exceeds the limit of {self.max_message_size}"
                )
            return _parse(line)
        self._scanned = len(buffer)
        if len(buffer) > self.max_message_size:
            raise JsonStreamError(
                f"unterminated message exceeds the limit of {self.max_message_size} bytes"
            )
        if self._eof:
            if buffer.strip():
                raise JsonStreamError(f"stream ended inside a message: {_excerpt(bytes(buffer))}")
            if not self._closed_reported:
                self._closed_reported = True
                return ConnectionClosed()
        return NEED_DATA


def _excerpt(data: bytes, limit: int = 80) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


def _parse(line: bytes) -> dict[str, Any]:
    # the common case, a UTF-8 object ending the line: straight to the decoder (json.loads on
    # bytes first guesses the encoding and matches whitespace around the document with regexes)
    if line[:1] == b"{":
        try:
            text = line.decode()
            message, end = _DECODE(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass  # json.loads below says exactly what is wrong
        else:
            if end == len(text) or not text[end:].strip(" \t\r\n"):
                return message  # type: ignore[no-any-return]
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise JsonStreamError(f"invalid JSON from peer ({exc}): {_excerpt(line)}") from None
    if not isinstance(message, dict):
        raise JsonStreamError(f"expected a JSON object, got {_excerpt(line)}")
    return message
