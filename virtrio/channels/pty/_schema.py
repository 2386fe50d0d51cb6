"""The schema of the terminal daemon's messages: the wire kind of each field of each message
type, and :func:`decode_payload`, one frame's MessagePack map into a message.

Every field is checked for its kind (a session id is an unsigned 32-bit integer, terminal data
is MessagePack bin, ...); a wrong one raises :class:`InvalidMessageError` naming the field. The
two frames of an echo's path, ``input`` and ``output``, are parsed without MessagePack when
they come as this package encodes them (:func:`~._codec.encode_input`,
:func:`~._codec.encode_output`: the same map, key for key); anything else, or anything amiss
in them, takes the general path, which gives every error its message.

>>> decode_payload(b"\\x83\\xa4type\\xa6output\\xa7session\\x07\\xa4data\\xc4\\x02hi")
Output(session=7, data=b'hi')
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs
import msgpack

from ._errors import InvalidMessageError, InvalidMsgpackError, UnexpectedTypeError, UnknownTypeError
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

__all__ = ["DATA_KEY", "INPUT_MAP", "OUTPUT_MAP", "decode_map", "decode_payload", "excerpt"]

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
                f"{where}: field {name!r} must be {exc}, got {excerpt(wire[name])}"
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


def excerpt(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# {"type": "output", "session": ..., "data": ...} up to the session's value, as msgpack packs it
OUTPUT_MAP: Final = b"\x83\xa4type\xa6output\xa7session"
# the same for {"type": "input", ...}
INPUT_MAP: Final = b"\x83\xa4type\xa5input\xa7session"
#: The data key after the session's value, as msgpack packs it.
DATA_KEY: Final = b"\xa4data"
#: How much of a payload's start tells whether a fast path applies.
_HEAD_SIZE: Final = max(len(OUTPUT_MAP), len(INPUT_MAP))
_U8, _U16, _U32 = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I")
#: msgpack's uint8/16/32 and bin8/16/32 markers, with the size of what follows
_UINTS: Final = {0xCC: _U8, 0xCD: _U16, 0xCE: _U32}
_BINS: Final = {0xC4: _U8, 0xC5: _U16, 0xC6: _U32}


def _session_data(payload: bytes | memoryview, at: int) -> tuple[int, bytes] | None:
    """``(session, data)`` of an input or output payload laid out as this package encodes it,
    from offset ``at`` (after the map's head), or None when it is laid out otherwise or is not
    well-formed (the general path then decodes it, or says what is wrong)."""
    size = len(payload)
    if at >= size:
        return None
    marker = payload[at]
    if marker < 0x80:  # positive fixint
        session = marker
        at += 1
    elif (kind := _UINTS.get(marker)) is not None and at + 1 + kind.size <= size:
        (session,) = kind.unpack_from(payload, at + 1)
        at += 1 + kind.size
    else:
        return None
    if payload[at : at + 5] != DATA_KEY or at + 6 > size:
        return None
    at += 5
    if (kind := _BINS.get(payload[at])) is None or at + 1 + kind.size > size:
        return None
    (length,) = kind.unpack_from(payload, at + 1)
    at += 1 + kind.size
    if at + length != size:  # the data must end the payload exactly
        return None
    return session, bytes(payload[at:])


def decode_payload(
    payload: bytes | memoryview, accept: Iterable[type[Message]] | None = None
) -> Message:
    """Decode one frame's payload into a message.

    Raises:
        InvalidMsgpackError, InvalidMessageError, UnknownTypeError, UnexpectedTypeError
    """
    head = bytes(payload[:_HEAD_SIZE])
    if head.startswith(OUTPUT_MAP):  # the hot paths: an echo, a flood's chunks, keystrokes
        fast: Message | None = _fast(payload, len(OUTPUT_MAP), Output, accept)
        if fast is not None:
            return fast
    elif head.startswith(INPUT_MAP):
        fast = _fast(payload, len(INPUT_MAP), Input, accept)
        if fast is not None:
            return fast
    return decode_map(payload, accept)


def decode_map(
    payload: bytes | memoryview, accept: Iterable[type[Message]] | None = None
) -> Message:
    """:func:`decode_payload` by the general path alone (MessagePack, then the schema): what
    the fast paths must agree with.

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
        raise InvalidMessageError(f"a message must be a map, got {excerpt(wire)}")
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
            f"unknown message type {excerpt(kind)}", request_id=request_id
        ) from None
    if accept is not None and cls not in accept:
        raise UnexpectedTypeError(f"a {kind!r} message is not accepted here", request_id=request_id)
    try:
        message: Message = _fields(cls, wire, kinds, kind)
    except InvalidMessageError as exc:
        exc.request_id = request_id
        raise
    return message


def _fast(
    payload: bytes | memoryview,
    at: int,
    cls: type[Output] | type[Input],
    accept: Iterable[type[Message]] | None,
) -> Message | None:
    if accept is not None and cls not in accept:
        return None  # (the general path raises UnexpectedTypeError)
    parsed = _session_data(payload, at)
    if parsed is None:
        return None
    return cls(parsed[0], parsed[1])
