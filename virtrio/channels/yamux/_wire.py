"""How a yamux session's bytes reach the transport: the :class:`Wire` interface, with two
implementations.

- :class:`StreamWire`, any Trio stream: the session's writer task sends everything, its reader
  task receives everything.
- :class:`SocketWire`, a socket read and written directly (``os.read``/``os.writev`` once Trio
  reports readiness): a task with frames to send writes them at once, as far as the kernel
  takes them without blocking, and a stream's reader about to park first reads what the
  socket already holds. One scheduling round per read instead of Trio's two, and no hand-over
  to the writer task when the kernel takes a write whole (docs/yamux.md, "How bytes move").
"""

from __future__ import annotations

import os
from typing import Protocol

import trio

from virtrio.channels._heap import serve_reads_from_heap

__all__ = ["IOV_MAX", "Buffer", "SocketWire", "StreamWire", "Wire", "wire_for"]

#: Bytes asked of the transport per read.
_RECEIVE_SIZE = 512 * 1024
#: Reads shorter than this make the next read go into a small reused buffer.
_SMALL_READ = 16 * 1024
#: Buffers one writev may take (Linux's IOV_MAX); any beyond are left for the next.
IOV_MAX = 1024

Buffer = bytes | bytearray | memoryview


class Wire(Protocol):
    """The transport as a session uses it."""

    #: True when :meth:`write_now` and :meth:`read_now` work (any task may use them).
    direct: bool

    async def send_all(self, data: Buffer) -> None:
        """Send all of ``data`` (the writer task's way)."""

    async def receive(self) -> bytes | bytearray:
        """The next bytes received; empty at the end of the connection (the reader task's)."""

    def write_now(self, buffers: list[Buffer]) -> int:
        """Write what the kernel takes of ``buffers`` without blocking; how many bytes (0 when
        full, or broken: :meth:`send_all` then waits, or reports it)."""

    def read_now(self) -> bytes:
        """One non-blocking read: :class:`BlockingIOError` when there is nothing yet,
        :class:`OSError` when broken, empty at the end of the connection."""

    async def wait_readable(self) -> None:
        """Return once :meth:`read_now` may find something (or would report the end)."""

    def write_some(self, buffers: list[Buffer]) -> int:
        """As :meth:`write_now`, but :class:`OSError` when broken (the writer task's)."""

    async def wait_writable(self) -> None:
        """Return once a write may take something (or would report that it is broken)."""


class StreamWire:
    """Any Trio stream: everything goes through the session's reader and writer tasks."""

    direct = False

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def send_all(self, data: Buffer) -> None:
        """Send through the stream."""
        await self._stream.send_all(data)

    async def receive(self) -> bytes | bytearray:
        """Receive from the stream."""
        return await self._stream.receive_some(_RECEIVE_SIZE)

    def write_now(self, buffers: list[Buffer]) -> int:
        """Nothing is written at once on a stream."""
        return 0

    def read_now(self) -> bytes:
        """Nothing is read at once from a stream."""
        raise BlockingIOError

    async def wait_readable(self) -> None:
        """Never: a stream is read by the reader task alone (:meth:`receive`)."""
        raise NotImplementedError("a Trio stream is read by the session's reader task")

    def write_some(self, buffers: list[Buffer]) -> int:
        """Nothing is written at once on a stream."""
        return 0

    async def wait_writable(self) -> None:
        """Wait until the stream might take more."""
        await self._stream.wait_send_all_might_not_block()


class SocketWire:
    """A connected socket's descriptor, read and written directly (see the module)."""

    direct = True

    def __init__(self, socket: trio.socket.SocketType) -> None:
        serve_reads_from_heap(_RECEIVE_SIZE)
        self._socket = socket
        self._scratch: bytearray | None = None  # see read_now
        #: The last read took less than it asked for (or found nothing): the socket is most
        #: likely empty now; after a full one it very likely holds more (DirectReads' rule).
        self.drained = True

    @property
    def _fd(self) -> int:
        # looked up at each system call: once the transport is closed it is -1, so a late
        # call fails with EBADF instead of reaching whatever file took the number since
        return self._socket.fileno()

    async def send_all(self, data: Buffer) -> None:
        """Write all of ``data``, waiting for the socket only when it is full."""
        # as receive: no scheduling round after a write the socket took whole
        view = memoryview(data)
        fd = self._fd
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await self.wait_writable()

    async def receive(self) -> bytes:
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
            return os.writev(self._fd, buffers[:IOV_MAX])
        except OSError:  # full (EAGAIN), or broken: send_all waits, or reports it
            return 0

    def write_some(self, buffers: list[Buffer]) -> int:
        """``writev`` without blocking; broken: OSError."""
        try:
            return os.writev(self._fd, buffers[:IOV_MAX])
        except BlockingIOError:
            return 0

    async def wait_writable(self) -> None:
        """Wait until the socket has room (an :meth:`interrupt` while the socket stays open
        is not its end: it waits again).

        Raises:
            trio.ClosedResourceError: the socket was closed.
        """
        while True:
            try:
                await trio.lowlevel.wait_writable(self._fd)
            except trio.ClosedResourceError:
                if self.closed:
                    raise
                continue
            return

    async def wait_readable(self) -> None:
        """Wait until the socket is readable.

        Raises:
            trio.ClosedResourceError: the socket was closed, or :meth:`interrupt` was called
                (then :attr:`closed` is false).
        """
        await trio.lowlevel.wait_readable(self._fd)

    @property
    def closed(self) -> bool:
        """Whether the socket was closed."""
        return self._socket.fileno() < 0

    def interrupt(self) -> None:
        """Wake every task waiting for the socket with :class:`trio.ClosedResourceError`,
        though it stays open (Trio's ``notify_closing`` without the close): a wait stopped
        without the cost of a cancel scope around each one. :meth:`wait_writable` waits
        again; a reader looks at why it waited."""
        if not self.closed:
            trio.lowlevel.notify_closing(self._fd)

    def read_now(self) -> bytes:
        """One non-blocking read."""
        self.drained = True
        if self._scratch is None:
            data = os.read(self._fd, _RECEIVE_SIZE)
            if len(data) < _SMALL_READ:
                self._scratch = bytearray(_SMALL_READ)
            self.drained = len(data) < _RECEIVE_SIZE
            return data
        # After a small read (window updates, pings, short messages), the next one goes
        # into a small reused buffer: allocating a large buffer only to shrink it to 12
        # bytes costs more than the read itself.
        size = os.readv(self._fd, [self._scratch])
        data = bytes(memoryview(self._scratch)[:size])
        if size == _SMALL_READ:
            self._scratch = None
            self.drained = False
        return data


def wire_for(transport: trio.abc.Stream) -> Wire:
    """The direct socket path for a :class:`trio.SocketStream`, the generic one otherwise."""
    if isinstance(transport, trio.SocketStream):
        return SocketWire(transport.socket)
    return StreamWire(transport)
