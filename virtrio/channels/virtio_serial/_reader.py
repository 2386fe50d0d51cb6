"""A Trio stream with ``read_until`` for line-oriented guest protocols."""

from __future__ import annotations

import math

import trio

from virtrio.errors import ConnectionLostError, VirtrioTimeoutError

from ._buffer import Delimiter, ReadBuffer
from ._errors import VirtioSerialError

__all__ = ["IncompleteReadError", "StreamReader"]

_CHUNK = 65536


class IncompleteReadError(VirtioSerialError, ConnectionLostError):
    """The stream ended before the delimiter arrived.

    Attributes:
        partial: the bytes received after the last complete read (also left in the reader).
    """

    def __init__(self, message: str, *, partial: bytes) -> None:
        super().__init__(message)
        self.partial = partial


class StreamReader(trio.abc.Stream):
    """Wraps a Trio stream: :meth:`read_until` plus the stream's own send/receive.

    Bytes received past a delimiter stay buffered for the next call (and for
    :meth:`receive_some`), and a read that times out loses nothing.
    """

    def __init__(self, stream: trio.abc.Stream, *, name: str = "stream") -> None:
        #: the wrapped stream
        self.stream = stream
        #: names the stream in errors
        self.name = name
        self._buffer = ReadBuffer()
        self._eof = False

    @property
    def buffered(self) -> bytes:
        """Bytes received and not yet read."""
        return self._buffer.pending

    async def read_until(
        self,
        delimiter: Delimiter,
        *,
        timeout: float = math.inf,
        max_size: int = 1024 * 1024,
        include: bool = True,
    ) -> bytes:
        """Read through the first match of ``delimiter`` (literal bytes or a compiled regex).

        Args:
            timeout: seconds to wait for the delimiter.
            max_size: fail if this many bytes arrive without it.
            include: return the delimiter with the data (it is consumed either way).

        Raises:
            VirtrioTimeoutError: no delimiter in time (what arrived stays buffered).
            IncompleteReadError: the stream ended or broke (e.g. reset) first (the tail
                stays buffered).
            ReadLimitError: ``max_size`` exceeded.
        """
        with trio.move_on_after(timeout):
            while True:
                found = self._buffer.take_until(delimiter, max_size=max_size, include=include)
                if found is not None:
                    await trio.lowlevel.checkpoint()
                    return found
                if self._eof:
                    raise IncompleteReadError(
                        f"{self.name}: stream ended before {delimiter!r}",
                        partial=self._buffer.pending,
                    )
                try:
                    data = await self.stream.receive_some(_CHUNK)
                except trio.BrokenResourceError as exc:  # e.g. reset: lost, as an end is
                    self._eof = True
                    raise IncompleteReadError(
                        f"{self.name}: connection lost before {delimiter!r}: {exc}",
                        partial=self._buffer.pending,
                    ) from exc
                if not data:
                    self._eof = True
                self._buffer.feed(bytes(data))
        raise VirtrioTimeoutError(
            f"{self.name}: no {delimiter!r} within {timeout:g} s "
            f"({len(self._buffer)} bytes buffered)"
        )

    async def read_line(self, *, timeout: float = math.inf, max_size: int = 1024 * 1024) -> bytes:
        """One ``\\n``-terminated line, without the newline."""
        return await self.read_until(b"\n", timeout=timeout, max_size=max_size, include=False)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Buffered bytes first, then the stream's."""
        if len(self._buffer):
            await trio.lowlevel.checkpoint()
            return self._buffer.take(max_bytes)
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        return bytes(await self.stream.receive_some(max_bytes))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` on the wrapped stream."""
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """As the wrapped stream's."""
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        """Close the wrapped stream."""
        await self.stream.aclose()
