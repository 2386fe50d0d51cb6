"""How a yamux session's bytes reach the transport: the :class:`Wire` interface, with two
implementations.

- :class:`StreamWire`, any Trio stream: the session's writer task sends everything, its reader
  task receives everything.
- :class:`SocketWire`, a socket read and written directly (``os.read``/``os.writev`` once Trio
  reports readiness): a task with frames to send writes them at once, as far as the kernel
  takes them without blocking, and a stream's reader about to park first reads what the
  socket already holds. One scheduling round per read instead of Trio's two, and no hand-over
  to the writer task when the kernel takes a write whole (docs/yamux.md, "How bytes move").
  Reads go into one reused buffer: a fresh 512 KiB ``bytes`` per read costs glibc an
  ``mmap``, page faults on every page the kernel fills and a ``munmap``, four times what
  the read itself costs (the parser copies each body out of the buffer instead).
"""

from __future__ import annotations

import os
from typing import Protocol

import trio

__all__ = ["SocketWire", "StreamWire", "Wire", "wire_for"]

#: Bytes asked of the transport per read.
_RECEIVE_SIZE = 512 * 1024
#: Buffers one writev may take (Linux's IOV_MAX); any beyond are left for send_all.
_IOV_MAX = 1024

Buffer = bytes | bytearray | memoryview


class Wire(Protocol):
    """The transport as a session uses it."""

    #: True when :meth:`write_now` and :meth:`read_now` work (any task may use them).
    direct: bool

    async def send_all(self, data: Buffer) -> None:
        """Send all of ``data`` (the writer task's way)."""

    async def receive(self) -> bytes | bytearray | memoryview:
        """The next bytes received; empty at the end of the connection (the reader task's).
        A view is valid only until the next read (it is into a reused buffer)."""

    def write_now(self, buffers: list[Buffer]) -> int:
        """Write what the kernel takes of ``buffers`` without blocking; how many bytes (0 when
        full, or broken: :meth:`send_all` then waits, or reports it)."""

    def read_now(self) -> bytes | memoryview:
        """One non-blocking read: :class:`BlockingIOError` when there is nothing yet,
        :class:`OSError` when broken, empty at the end of the connection. A view is valid
        only until the next read."""


class StreamWire:
    """Any Trio stream: everything goes through the session's reader and writer tasks."""

    direct = False

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: Buffer) -> None:
        """Send through the stream."""
        await self._stream.send_all(data)

    async def receive(self) -> bytes | bytearray | memoryview:
        """Receive from the stream."""
        return await self._stream.receive_some(_RECEIVE_SIZE)

    def write_now(self, buffers: list[Buffer]) -> int:
        """Nothing is written at once on a stream."""
        return 0

    def read_now(self) -> bytes | memoryview:
        """Nothing is read at once from a stream."""
        raise BlockingIOError


class SocketWire:
    """A connected socket's descriptor, read and written directly (see the module)."""

    direct = True

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray(_RECEIVE_SIZE)  # every read goes here (see the module)
        self._view = memoryview(self._buffer)

    async def send_all(self, data: Buffer) -> None:
        """Write all of ``data``, waiting for the socket only when it is full."""
        # as receive: no scheduling round after a write the socket took whole
        view = memoryview(data)
        fd = self._fd
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(fd)

    async def receive(self) -> memoryview:
        """Wait until the socket is readable, then read."""
        # one scheduling round per read instead of Trio's two (wait, then a checkpoint after
        # the read); waiting first keeps the reader fair
        while True:
            await trio.lowlevel.wait_readable(self._fd)
            try:
                return self.read_now()
            except BlockingIOError:
                pass

    def write_now(self, buffers: list[Buffer]) -> int:
        """``writev`` without blocking."""
        try:
            return os.writev(self._fd, buffers[:_IOV_MAX])
        except OSError:  # full (EAGAIN), or broken: send_all waits, or reports it
            return 0

    def read_now(self) -> memoryview:
        """One non-blocking read, into the reused buffer: valid until the next read."""
        return self._view[: os.readv(self._fd, [self._buffer])]


def wire_for(transport: trio.abc.Stream) -> Wire:
    """The direct socket path for a :class:`trio.SocketStream`, the generic one otherwise."""
    if isinstance(transport, trio.SocketStream):
        return SocketWire(transport.socket.fileno())
    return StreamWire(transport)
