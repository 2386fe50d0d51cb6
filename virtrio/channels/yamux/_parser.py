"""The input side of a yamux session core: frames out of bytes cut anywhere.

:class:`FrameParser` finds frames in what it is fed (in place where they are whole, joining a
frame cut short only once it is complete), keeps the end of input and the sticky error, and
hands each frame to its subclass, :class:`~virtrio.channels.yamux.YamuxSession`.
"""

from __future__ import annotations

from typing import Final

from virtrio.channels._sansio import ConnectionClosed, ErrorState

from ._errors import YamuxError, YamuxLocalProtocolError, YamuxProtocolError
from ._events import Event
from ._frames import HEADER, HEADER_SIZE, VERSION, FrameType

__all__ = ["MAX_FRAME", "FrameParser"]

#: Largest Data frame we send (rust-yamux rejects bodies over 1 MiB).
MAX_FRAME: Final = 256 * 1024
_DATA, _WINDOW_UPDATE, _PING, _GO_AWAY = (int(kind) for kind in FrameType)
#: Data bodies this large are handed out as views into the received bytes instead of copies
#: (smaller ones are copied, so a tiny body never keeps a large receive buffer alive).
_VIEW_FROM: Final = 16 * 1024
_NEVER: Final = 2**33  # no body is this large: every one is copied


class FrameParser:
    """Bytes in, frames handed to the ``_on_*`` methods a subclass defines."""

    #: The largest window a stream may have (bounds the Data frames accepted).
    max_window: int

    def __init__(self) -> None:
        # the frame the last input cut short: its header, and its body so far as views
        self._head = bytearray()
        self._body: list[memoryview] = []
        self._body_size = 0
        self._error = ErrorState()
        self._eof = False

    def _on_stream_frame(
        self,
        events: list[Event],
        flags: int,
        stream_id: int,
        body: bytes | memoryview | None,
        delta: int,
    ) -> None:
        raise NotImplementedError

    def _on_ping(self, events: list[Event], flags: int, opaque: int) -> None:
        raise NotImplementedError

    def _on_go_away(self, events: list[Event], code: int) -> None:
        raise NotImplementedError

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer (``b""`` at the end of input); returns the events they
        complete (:class:`ConnectionClosed` for a clean end).

        Given as ``bytes``, large Data bodies are delivered as read-only views into ``data``
        (no copy). Anything else (a reused read buffer) is not kept beyond the call: each
        body is copied out of it once, to bytes of its own, and so is a frame it cuts short.

        Raises:
            YamuxProtocolError: the peer broke the protocol (then send GoAway(protocol error)
                from ``go_away`` and close), or the input ended inside a frame; raised
                again by every later call. The events before the fault are lost with it.
            YamuxLocalProtocolError: bytes after the end of input.
        """
        self._error.check()
        if not data:
            return self._end_of_input()
        if self._eof:
            raise YamuxLocalProtocolError("yamux data received after the end of input")
        owned = type(data) is bytes  # immutable: views into it stay valid
        buffer = memoryview(data)
        events: list[Event] = []
        try:
            offset = self._complete_pending(buffer, events, owned) if self._head else 0
            offset = self._parse(buffer, offset, events, _VIEW_FROM if owned else _NEVER)
        except YamuxProtocolError as exc:
            self._error.fail(exc)
        if offset < len(buffer):
            tail = buffer[offset:]
            self._head = bytearray(tail[:HEADER_SIZE])
            body = tail[HEADER_SIZE:]
            self._body = [body if owned else memoryview(bytes(body))] if body else []
            self._body_size = len(body)
        return events

    def _end_of_input(self) -> list[Event]:
        if self._eof:
            return []
        self._eof = True
        if self._head:
            self._error.fail(
                YamuxProtocolError(
                    f"the input ended inside a frame ({len(self._head) + self._body_size}"
                    " bytes of it received)"
                )
            )
        return [ConnectionClosed()]

    @property
    def error(self) -> YamuxError | None:
        """The protocol error the session failed with, if it did."""
        error = self._error.error
        assert error is None or isinstance(error, YamuxError)
        return error

    def _frame_size(self, buffer: bytes | bytearray | memoryview, offset: int) -> int:
        """The whole size of the frame whose (complete) header starts at ``offset``."""
        version, kind, _, _, length = HEADER.unpack_from(buffer, offset)
        if version != VERSION:
            raise YamuxProtocolError(f"unsupported yamux version {version}")
        if kind != _DATA:
            return HEADER_SIZE
        length = int(length)
        if length > self.max_window + MAX_FRAME:
            raise YamuxProtocolError(f"Data frame of {length} bytes exceeds any window")
        return HEADER_SIZE + length

    def _complete_pending(self, buffer: memoryview, events: list[Event], owned: bool) -> int:
        """Go on with the frame the previous input cut short, taking only its own bytes from
        ``buffer`` (the rest is parsed in place); returns how many were taken. Its body is
        kept as views until it is whole, then joined: copied once (a piece of a ``buffer``
        that is not ``owned`` is copied when the frame is still not whole)."""
        head = self._head
        taken = 0
        if len(head) < HEADER_SIZE:
            taken = min(HEADER_SIZE - len(head), len(buffer))
            head += buffer[:taken]
            if len(head) < HEADER_SIZE:
                return taken
        size = self._frame_size(head, 0) - HEADER_SIZE
        more = min(size - self._body_size, len(buffer) - taken)
        if more > 0:
            self._body.append(buffer[taken : taken + more])
            self._body_size += more
            taken += more
        if self._body_size != size:
            if not owned and more > 0:
                self._body[-1] = memoryview(bytes(self._body[-1]))
            return taken
        _, kind, flags, stream_id, _ = HEADER.unpack(head)
        body = b"".join(self._body)
        self._head, self._body, self._body_size = bytearray(), [], 0
        if kind == _DATA:
            self._on_stream_frame(events, flags, stream_id, body, 0)
        else:
            self._parse(memoryview(bytes(head)), 0, events)
        return taken

    def _parse(
        self, buffer: memoryview, offset: int, events: list[Event], view_from: int = _VIEW_FROM
    ) -> int:
        """Handle every complete frame from ``offset`` (bodies of ``view_from`` bytes and up
        as views into ``buffer``, smaller ones copied); returns where the first incomplete one
        starts."""
        size = len(buffer)
        unpack = HEADER.unpack_from
        while size - offset >= HEADER_SIZE:
            version, kind, flags, stream_id, length = unpack(buffer, offset)
            if version != VERSION:
                raise YamuxProtocolError(f"unsupported yamux version {version}")
            if kind == _DATA:
                end = offset + HEADER_SIZE + length
                if end > size:
                    self._frame_size(buffer, offset)  # an impossible length fails at once
                    break
                body = buffer[offset + HEADER_SIZE : end]
                offset = end
                self._on_stream_frame(
                    events, flags, stream_id, body if length >= view_from else bytes(body), 0
                )
            else:
                offset += HEADER_SIZE
                if kind == _WINDOW_UPDATE:
                    self._on_stream_frame(events, flags, stream_id, None, length)
                elif kind == _PING:
                    self._on_ping(events, flags, length)
                elif kind == _GO_AWAY:
                    self._on_go_away(events, length)
                else:
                    raise YamuxProtocolError(f"unknown yamux frame type {kind}")
        return offset
