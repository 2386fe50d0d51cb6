"""The sans-I/O half of :class:`~virtrio.channels.virtio_serial.StreamReader`: a receive buffer
that hands out what precedes a delimiter (literal bytes or a regex) and keeps the rest."""

from __future__ import annotations

import re

from virtrio.errors import ConfigError, ProtocolError

from ._errors import VirtioSerialError

__all__ = ["Delimiter", "ReadBuffer", "ReadLimitError"]

#: A literal delimiter or a compiled bytes regex.
Delimiter = bytes | re.Pattern[bytes]


class ReadLimitError(VirtioSerialError, ProtocolError):
    """More than ``max_size`` bytes arrived without the delimiter (the bytes stay buffered)."""


class ReadBuffer:
    """Bytes received but not yet read.

    >>> buf = ReadBuffer()
    >>> buf.feed(b"one\\ntw")
    >>> buf.take_until(b"\\n"), buf.take_until(b"\\n"), bytes(buf.pending)
    (b'one\\n', None, b'tw')
    """

    def __init__(self) -> None:
        self._data = bytearray()
        # where the next literal search may start (nothing before it can begin a match)
        self._scanned = 0

    @property
    def pending(self) -> bytes:
        """Everything buffered and not yet taken."""
        return bytes(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        self._data += data

    def take(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` buffered bytes (all if None)."""
        size = len(self._data) if max_bytes is None else max_bytes
        out = bytes(self._data[:size])
        del self._data[:size]
        self._scanned = 0
        return out

    def take_until(
        self, delimiter: Delimiter, *, max_size: int | None = None, include: bool = True
    ) -> bytes | None:
        """The bytes up to the first ``delimiter`` match, or None if it is not buffered yet.

        The match itself is consumed (and returned too when ``include``); bytes after it stay.

        Raises:
            ConfigError: an empty literal delimiter, or a regex that can match empty.
            ReadLimitError: no match within the first ``max_size`` bytes.
        """
        if isinstance(delimiter, bytes):
            if not delimiter:
                raise ConfigError("read_until: the delimiter is empty")
            index = self._data.find(delimiter, self._scanned)
            if index < 0:
                self._scanned = max(0, len(self._data) - len(delimiter) + 1)
                self._check_limit(max_size, delimiter)
                return None
            start, end = index, index + len(delimiter)
        else:
            match = delimiter.search(self._data)
            if match is None:
                self._check_limit(max_size, delimiter)
                return None
            if match.end() == match.start():
                raise ConfigError(f"read_until: regex {delimiter.pattern!r} matched empty")
            start, end = match.start(), match.end()
        if max_size is not None and end > max_size:
            raise ReadLimitError(
                f"read_until: delimiter {_show(delimiter)} not within the first {max_size} bytes"
            )
        out = bytes(self._data[: end if include else start])
        del self._data[:end]
        self._scanned = 0
        return out

    def _check_limit(self, max_size: int | None, delimiter: Delimiter) -> None:
        if max_size is not None and len(self._data) > max_size:
            raise ReadLimitError(
                f"read_until: {len(self._data)} bytes buffered without delimiter "
                f"{_show(delimiter)} (limit {max_size})"
            )


def _show(delimiter: Delimiter) -> str:
    return repr(delimiter if isinstance(delimiter, bytes) else delimiter.pattern)
