"""The sans-I/O frame codec of the terminal daemon: ``[u32 big-endian length][MessagePack map]``.

>>> wire = encode(Input(session=1, data=b"ls\\n"))
>>> len(wire) - 4 == int.from_bytes(wire[:4], "big")
True
>>> decoder = FrameDecoder()
>>> decoder.receive_data(wire[:7])
>>> decoder.next_message() is NEED_DATA
True
>>> decoder.receive_data(wire[7:])
>>> decoder.next_message()
Input(session=1, data=b'ls\\n', id=None)

Errors are specific and say whether the stream can still be trusted
(:attr:`PtyProtocolError.fatal`). A frame whose payload is bad (not MessagePack, not a map, an
unknown ``type``, a field missing or of the wrong type) is consumed whole, so the next frame
decodes normally: the daemon answers with an ``error`` and goes on. A length prefix over the
limit, or a stream that ends inside a frame, leaves no frame boundary to trust: fatal, and
sticky — the decoder raises that error again on every later call (the contract of
:mod:`virtrio.channels._sansio`). A clean end of the stream, between frames, is one
:class:`ConnectionClosed`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import msgpack

from virtrio.channels._sansio import NEED_DATA, ConnectionClosed, ErrorState, NeedData

from ._errors import (
    FrameTooLargeError,
    InvalidMessageError,
    InvalidMsgpackError,
    PtyError,
    PtyLocalProtocolError,
    PtyProtocolError,
    TruncatedFrameError,
    UnexpectedTypeError,
    UnknownTypeError,
)
from ._messages import (
    Ack,
    Attach,
    BackpressureWarning,
    Create,
    Created,
    CreateOptions,
    Detach,
    Error,
    Exit,
    Input,
    Kill,
    Level,
    List,
    Message,
    Ok,
    Output,
    Resize,
    SessionInfo,
    Sessions,
    Signal,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "FrameDecoder",
    "FrameTooLargeError",
    "InvalidMessageError",
    "InvalidMsgpackError",
    "NeedData",
    "PtyError",
    "PtyLocalProtocolError",
    "PtyProtocolError",
    "TruncatedFrameError",
    "UnexpectedTypeError",
    "UnknownTypeError",
    "decode_payload",
    "encode",
    "encode_output",
]

#: 16 MiB: far above any terminal chunk or paste, far below what would hurt the daemon.
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024

_HEADER = struct.Struct(">I")


# ---- field kinds: how each field of each message looks on the wire --------------------------


def _u32(value: object) -> int:
    if type(value) is not int or not 0 <= value <= 0xFFFFFFFF:
        raise TypeError("an unsigned 32-bit integer")
    return value


def _u16(value: object) -> int:
    if type(value) is not int or not 0 <= value <= 0xFFFF:
        raise TypeError("an unsigned 16-bit integer")
    return value


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError("an integer")
    return value


def _opt_int(value: object) -> int | None:
    return None if value is None else _int(value)


def _opt_float(value: object) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise TypeError("a number")
    return float(value)  # type: ignore[arg-type]


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("a string")
    return value


def _bytes(value: object) -> bytes:
    # bin is the form; str (UTF-8) and an array of byte values are what a serde `Vec<u8>` or a
    # JavaScript client may send instead, so they are accepted too.
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list) and all(type(b) is int and 0 <= b <= 255 for b in value):
        return bytes(value)
    raise TypeError("bytes (MessagePack bin)")


def _signal(value: object) -> int | str:
    if type(value) is int or isinstance(value, str):
        return value
    raise TypeError("a signal number or name")


def _level(value: object) -> Level:
    try:
        return Level(value)
    except ValueError:
        raise TypeError("'yellow' or 'red'") from None


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("an array of strings")
    return tuple(value)


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("a map of strings to strings")
    return dict(value)


_OPTIONS_KINDS: Final = {
    "shell": _str,
    "command": _str,
    "args": _str_list,
    "env": _str_map,
    "cwd": _str,
    "cols": _u16,
    "rows": _u16,
    "console": _str,
}

_INFO_KINDS: Final = {
    "session": _u32,
    "kind": _str,
    "command": _str,
    "pid": _opt_int,
    "cols": _u16,
    "rows": _u16,
    "created": _opt_float,
    "last_attached": _opt_float,
    "attached": _u32,
}


#: Each message class's (name, default) of its fields, in order: attrs.fields() checks its
#: argument on every call, and this runs for every frame decoded.
_FIELDS_OF: dict[type, tuple[tuple[str, Any], ...]] = {}


def _fields(cls: type, wire: Mapping[str, Any], kinds: Mapping[str, Any], where: str) -> Any:
    values: dict[str, Any] = {}
    fields = _FIELDS_OF.get(cls)
    if fields is None:
        fields = _FIELDS_OF[cls] = tuple((f.name, f.default) for f in attrs.fields(cls))
    for name, default in fields:
        if name not in wire or (wire[name] is None and default is not attrs.NOTHING):
            if default is attrs.NOTHING:
                raise InvalidMessageError(f"{where}: missing field {name!r}")
            continue
        try:
            values[name] = kinds[name](wire[name])
        except TypeError as exc:
            raise InvalidMessageError(
                f"{where}: field {name!r} must be {exc}, got {_excerpt(wire[name])}"
            ) from None
    return cls(**values)


def _options(value: object) -> CreateOptions:
    if not isinstance(value, dict):
        raise TypeError("a map")
    options: CreateOptions = _fields(CreateOptions, value, _OPTIONS_KINDS, "create.options")
    return options


def _sessions(value: object) -> tuple[SessionInfo, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TypeError("an array of maps")
    return tuple(_fields(SessionInfo, v, _INFO_KINDS, "sessions[]") for v in value)


_ID = {"id": _int}
_SESSION = {"session": _u32, "id": _int}
#: Every message type, with the wire kind of each of its fields.
_SCHEMA: Final[dict[str, tuple[type[Message], dict[str, Any]]]] = {
    "create": (Create, {"options": _options, **_ID}),
    "attach": (Attach, _SESSION),
    "detach": (Detach, _SESSION),
    "input": (Input, {**_SESSION, "data": _bytes}),
    "resize": (Resize, {**_SESSION, "cols": _u16, "rows": _u16}),
    "kill": (Kill, _SESSION),
    "signal": (Signal, {**_SESSION, "signal": _signal}),
    "ack": (Ack, {**_SESSION, "count": _int}),
    "list": (List, _ID),
    "created": (Created, {**_SESSION, "pid": _int}),
    "sessions": (Sessions, {"sessions": _sessions, **_ID}),
    "ok": (Ok, _ID),
    "error": (Error, {"code": _str, "message": _str, **_SESSION}),
    "output": (Output, {"session": _u32, "data": _bytes}),
    "exit": (Exit, {"session": _u32, "code": _opt_int, "signal": _opt_int}),
    "backpressure_warning": (
        BackpressureWarning,
        {"session": _u32, "queue_size": _int, "level": _level, "dropped": _int},
    ),
}


def _excerpt(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _to_wire(value: Any) -> Any:
    if isinstance(value, Level):
        return value.value
    if isinstance(value, tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, CreateOptions):  # unset options are left out
        return {
            k: _to_wire(v)
            for k, v in attrs.asdict(value, recurse=False).items()
            if v is not None and v != () and v != {}
        }
    if isinstance(value, SessionInfo):
        return {k: _to_wire(v) for k, v in attrs.asdict(value, recurse=False).items()}
    return value


def encode(message: Message) -> bytes:
    """One frame for ``message``: its length, then its MessagePack map (``id`` omitted when
    None; terminal data as bin)."""
    wire: dict[str, Any] = {"type": message.TYPE}
    for key, value in attrs.asdict(message, recurse=False).items():
        if key == "id" and value is None:
            continue
        wire[key] = _to_wire(value)
    payload: bytes = msgpack.packb(wire, use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


# {"type": "output", "session": ..., "data": ...} up to the session's value, as msgpack packs it
_OUTPUT_MAP = b"\x83\xa4type\xa6output\xa7session"
# the same for {"type": "input", ...}
_INPUT_MAP = b"\x83\xa4type\xa5input\xa7session"
_DATA_KEY = b"\xa4data"
_BIN8, _BIN16, _BIN32 = struct.Struct(">BB"), struct.Struct(">BH"), struct.Struct(">BI")


def _encode_session_data(
    map_head: bytes, session: int, data: bytes | bytearray | memoryview
) -> bytes:
    size = len(data)
    if size < 0x100:
        bin_header = _BIN8.pack(0xC4, size)
    elif size < 0x10000:
        bin_header = _BIN16.pack(0xC5, size)
    else:
        bin_header = _BIN32.pack(0xC6, size)
    head = map_head + msgpack.packb(session) + _DATA_KEY + bin_header
    return b"".join((_HEADER.pack(len(head) + size), head, data))


def encode_output(session: int, data: bytes | bytearray | memoryview) -> bytes:
    """``encode(Output(session, data))`` without building the message (the hot path): the
    same bytes, with ``data`` copied once, into the frame."""
    return _encode_session_data(_OUTPUT_MAP, session, data)


def encode_input(session: int, data: bytes | bytearray | memoryview) -> bytes:
    """``encode(Input(session, data))`` (no id) without building the message: a keystroke's
    frame, the same bytes."""
    return _encode_session_data(_INPUT_MAP, session, data)


def decode_payload(
    payload: bytes | memoryview, accept: Iterable[type[Message]] | None = None
) -> Message:
    """Decode one frame's payload into a message.

    Raises:
        InvalidMsgpackError, InvalidMessageError, UnknownTypeError, UnexpectedTypeError
    """
    try:
        wire = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, TypeError) as exc:
        # ValueError covers msgpack's ExtraData, FormatError, StackError and bad UTF-8; TypeError
        # is a map key Python cannot hash (an array or a map: ``{[]: 0}``)
        raise InvalidMsgpackError(f"frame payload is not valid MessagePack: {exc}") from None
    if not isinstance(wire, dict):
        raise InvalidMessageError(f"a message must be a map, got {_excerpt(wire)}")
    request_id = wire.get("id") if type(wire.get("id")) is int else None
    kind = wire.get("type")
    if not isinstance(kind, str):
        raise InvalidMessageError(
            "a message needs a string field 'type'" + ("" if kind is None else f", got {kind!r}"),
            request_id=request_id,
        )
    try:
        cls, kinds = _SCHEMA[kind]
    except KeyError:
        raise UnknownTypeError(
            f"unknown message type {_excerpt(kind)}", request_id=request_id
        ) from None
    if accept is not None and cls not in accept:
        raise UnexpectedTypeError(f"a {kind!r} message is not accepted here", request_id=request_id)
    try:
        message: Message = _fields(cls, wire, kinds, kind)
    except InvalidMessageError as exc:
        exc.request_id = request_id
        raise
    return message


class FrameDecoder:
    """Splits received bytes into messages; see the module docstring.

    Args:
        max_frame_size: the largest payload accepted; a larger length prefix is fatal.
        accept: the message classes this side accepts (:data:`REQUEST_TYPES` in a daemon,
            :data:`EVENT_TYPES` in a client); others raise :class:`UnexpectedTypeError`.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        accept: Iterable[type[Message]] | None = None,
    ) -> None:
        self.max_frame_size = max_frame_size
        self._accept = frozenset(accept) if accept is not None else None
        self._buffer = bytearray()
        self._eof = False
        self._closed_reported = False
        self._error = ErrorState()  # only fatal errors are kept

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded."""
        return len(self._buffer)

    @property
    def eof(self) -> bool:
        """Whether the end of the stream was received."""
        return self._eof

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; ``b""`` means the peer closed the stream. Bytes after a
        fatal error are dropped (the error stands).

        Raises:
            PtyLocalProtocolError: bytes after the end of the stream.
        """
        if self._error.failed:
            return
        if data:
            if self._eof:
                raise PtyLocalProtocolError("pty data received after the end of the stream")
            self._buffer += data
        else:
            self._eof = True

    def next_message(self) -> Message | ConnectionClosed | NeedData:
        """The next message, :class:`ConnectionClosed` once at a clean end of the stream, or
        :data:`NEED_DATA`.

        Raises:
            PtyProtocolError: a subclass naming what is wrong; unless it is ``fatal`` the bad
                frame was consumed and decoding may continue. A fatal one is raised again by
                every later call.
        """
        self._error.check()
        try:
            return self._next()
        except PtyProtocolError as exc:
            if not exc.fatal:
                raise
            self._buffer.clear()
            self._error.fail(exc)

    def _next(self) -> Message | ConnectionClosed | NeedData:
        buffer = self._buffer
        if len(buffer) < 4:
            return self._need_data()
        (size,) = _HEADER.unpack_from(buffer)
        if size > self.max_frame_size:
            raise FrameTooLargeError(
                f"frame of {size} bytes exceeds the limit of {self.max_frame_size}"
            )
        end = 4 + size
        if len(buffer) < end:
            return self._need_data()
        try:
            with memoryview(buffer) as view, view[4:end] as payload:  # no copy of the payload
                return decode_payload(payload, self._accept)
        finally:
            del buffer[:end]  # consumed, even when it was bad

    def _need_data(self) -> ConnectionClosed | NeedData:
        if self._eof:
            if self._buffer:
                raise TruncatedFrameError(
                    f"the stream ended inside a frame ({len(self._buffer)} bytes pending)"
                )
            if not self._closed_reported:
                self._closed_reported = True
                return ConnectionClosed()
        return NEED_DATA
