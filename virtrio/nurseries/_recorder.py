"""Every byte of a line-oriented channel, with offsets: marks and expects that cannot miss.

A :class:`Recorder` keeps the output of a channel (a serial console, a virtio-serial port) from
the moment it first connects, numbered by byte offset from 0 across reconnects, in a bounded
window. ``mark()`` is the offset now; ``find(pattern, after=mark)`` searches only what arrived
at or after the mark, so output that arrived between a command and its wait is never lost, and a
wait never matches output from before its mark. When the window has moved past a mark, the
search raises :class:`MarkExpiredError` instead of guessing. This module is pure (no Trio): the
supervised channel in :mod:`._line` feeds it and waits on it.
"""

from __future__ import annotations

import re

import attrs

from virtrio.errors import VirtrioError

__all__ = ["Mark", "MarkExpiredError", "Match", "Pattern", "Recorder", "compile_pattern"]

#: A literal (``str``/``bytes``) or a compiled regular expression (of ``bytes`` or ``str``).
Pattern = str | bytes | re.Pattern[bytes] | re.Pattern[str]


class MarkExpiredError(VirtrioError):
    """The recorded window no longer reaches back to the mark (retention too small)."""


@attrs.frozen(order=True)
class Mark:
    """A position in a channel's output: the byte offset from the first byte it ever received."""

    offset: int
    channel: str = attrs.field(default="", order=False)


@attrs.frozen
class Match:
    """Where a pattern matched: offsets ``[start, end)`` and the bytes (``groups`` of a regex)."""

    start: int
    end: int
    data: bytes
    groups: tuple[bytes | None, ...] = ()
    channel: str = ""

    @property
    def mark(self) -> Mark:
        """A mark just after the match: the ``after=`` of the next expect."""
        return Mark(self.end, self.channel)

    @property
    def text(self) -> str:
        """The matched bytes decoded as UTF-8 (replacement characters for bad bytes)."""
        return self.data.decode("utf-8", "replace")


def compile_pattern(pattern: Pattern) -> re.Pattern[bytes]:
    """A bytes regex for ``pattern``: a literal is escaped, a ``str`` regex encoded as UTF-8."""
    if isinstance(pattern, bytes):
        return re.compile(re.escape(pattern))
    if isinstance(pattern, str):
        return re.compile(re.escape(pattern.encode()))
    if isinstance(pattern.pattern, str):
        return re.compile(pattern.pattern.encode(), pattern.flags & ~re.UNICODE)
    return pattern


class Recorder:
    """A bounded window over a byte stream, addressed by absolute offsets.

    Args:
        retention: bytes kept; older ones are forgotten (a mark before them then expires).
        name: names the channel in marks and errors.
    """

    def __init__(self, retention: int = 1024 * 1024, *, name: str = "") -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1 byte")
        self.retention = retention
        self.name = name
        self._buffer = bytearray()
        self._base = 0  # offset of _buffer[0]

    @property
    def end(self) -> int:
        """The offset after the last byte received (bytes received in all)."""
        return self._base + len(self._buffer)

    @property
    def start(self) -> int:
        """The offset of the oldest byte still kept."""
        return self._base

    def mark(self) -> Mark:
        """The position now: a later :meth:`find` with this mark sees only what comes after."""
        return Mark(self.end, self.name)

    def feed(self, data: bytes | bytearray) -> None:
        """Record ``data`` (the next bytes of the stream)."""
        self._buffer += data
        excess = len(self._buffer) - self.retention
        if excess > 0:
            del self._buffer[:excess]
            self._base += excess

    def data(self, after: Mark | int | None = None) -> bytes:
        """The bytes kept from ``after`` (default: the oldest kept) to the end.

        Raises:
            MarkExpiredError: ``after`` is older than the window.
        """
        return bytes(self._view(after))

    def _view(self, after: Mark | int | None) -> memoryview:
        offset = self._base if after is None else after if isinstance(after, int) else after.offset
        if offset < self._base:
            raise MarkExpiredError(
                f"channel {self.name}: the mark at byte {offset} fell out of the recorded window "
                f"(bytes {self._base}-{self.end} kept; raise the channel's retention, now "
                f"{self.retention} bytes)"
            )
        if offset > self.end:
            raise ValueError(f"mark at byte {offset} is beyond the end ({self.end})")
        return memoryview(self._buffer)[offset - self._base :]

    def find(self, pattern: re.Pattern[bytes], after: Mark | int) -> Match | None:
        """The first match of ``pattern`` starting at or after ``after``, or None yet.

        Raises:
            MarkExpiredError: ``after`` is older than the window.
        """
        view = self._view(after)
        offset = self.end - len(view)
        found = pattern.search(view)
        if found is None:
            return None
        return Match(
            offset + found.start(),
            offset + found.end(),
            found.group(0),
            found.groups(),
            self.name,
        )
