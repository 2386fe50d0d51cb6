"""The sans-I/O frame codec of the terminal daemon: ``[u32 big-endian length][MessagePack map]``
(each message's map and its fields' kinds are in :mod:`._schema`).

>>> from virtrio.channels.pty._messages import Input
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
from collections.abc import Iterable
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
from ._messages import CreateOptions, Level, Message, SessionInfo
from ._schema import DATA_KEY, INPUT_MAP, OUTPUT_MAP, decode_payload

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
    "encode_input",
    "encode_output",
]

#: 16 MiB: far above any terminal chunk or paste, far below what would hurt the daemon.
DEFAULT_MAX_FRAME_SIZE: Final = 16 * 1024 * 1024

_HEADER = struct.Struct(">I")


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
    head = map_head + msgpack.packb(session) + DATA_KEY + bin_header
    return b"".join((_HEADER.pack(len(head) + size), head, data))


def encode_output(session: int, data: bytes | bytearray | memoryview) -> bytes:
    """``encode(Output(session, data))`` without building the message (the hot path): the
    same bytes, with ``data`` copied once, into the frame."""
    return _encode_session_data(OUTPUT_MAP, session, data)


def encode_input(session: int, data: bytes | bytearray | memoryview) -> bytes:
    """``encode(Input(session, data))`` (no id) without building the message: a keystroke's
    frame, the same bytes."""
    return _encode_session_data(INPUT_MAP, session, data)


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
