"""How an xtransport channel moves its bytes: :func:`io_for` picks one of two ways.

- :class:`StreamIO`, any Trio stream: ``receive_some`` and ``send_all`` (the packets of a send
  joined into one buffer first).
- :class:`SocketIO`, a :class:`trio.SocketStream`'s descriptor read and written directly: a
  read waits until the socket is readable and then reads (one scheduling round, where
  ``receive_some`` tries a read, takes a checkpoint after it and, when nothing had come, waits
  and reads again), except after a long read, when more is likely there already: then it tries
  first (no epoll registration for a wait that would return at once). A send hands the packets
  to one ``writev`` as they lie (each header, then a view of the caller's bytes) instead of
  joining them, waiting only while the socket is full.

Both raise glibc's mmap threshold once (:mod:`virtrio.channels._heap`), as the yamux
session's ``SocketWire`` does.
"""

from __future__ import annotations

import os
from typing import Protocol

import trio

from virtrio.channels._heap import serve_reads_from_heap
from virtrio.primitives import write_all

__all__ = ["Buffer", "ChannelIO", "SocketIO", "StreamIO", "io_for"]

Buffer = bytes | memoryview

#: Bytes asked of the transport per read.
RECEIVE_SIZE = 256 * 1024
#: A read at least this long makes the next one try the socket before waiting for it.
_STREAMING = 32 * 1024


class ChannelIO(Protocol):
    """The transport as a channel uses it."""

    async def receive(self) -> bytes | bytearray:
        """The next bytes received; empty at the end of the stream."""

    async def send(self, buffers: list[Buffer]) -> None:
        """Send every buffer, in order (``buffers`` may be emptied)."""


class StreamIO:
    """Any Trio stream."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream

    async def receive(self) -> bytes | bytearray:
        """``receive_some``."""
        return await self._stream.receive_some(RECEIVE_SIZE)

    async def send(self, buffers: list[Buffer]) -> None:
        """``send_all`` of the buffers joined."""
        await self._stream.send_all(buffers[0] if len(buffers) == 1 else b"".join(buffers))


class SocketIO:
    """A connected socket's descriptor, read and written directly (see the module).

    The descriptor is looked up before each system call: once the stream is closed it is -1
    (and its number may belong to another file), which is :class:`trio.ClosedResourceError`.
    """

    def __init__(self, stream: trio.SocketStream) -> None:
        serve_reads_from_heap(RECEIVE_SIZE)
        self._socket = stream.socket
        self._streaming = False

    def _fd(self) -> int:
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the xtransport socket is closed")
        return fd

    async def receive(self) -> bytes:
        """Wait until the socket is readable, then read; after a read of at least
        :data:`_STREAMING` bytes, read at once (a checkpoint before and a schedule point after,
        as trio's ``recv``) and wait only if nothing is there."""
        if self._streaming:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = os.read(self._fd(), RECEIVE_SIZE)
            except BlockingIOError:
                pass
            else:
                self._streaming = len(data) >= _STREAMING
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
        while True:
            await trio.lowlevel.wait_readable(self._fd())
            try:
                data = os.read(self._fd(), RECEIVE_SIZE)
            except BlockingIOError:
                continue
            self._streaming = len(data) >= _STREAMING
            return data

    async def send(self, buffers: list[Buffer]) -> None:
        """``writev`` the buffers as far as the socket takes them, waiting while it is full
        (:func:`~virtrio.primitives.write_all`).

        Cancelled while waiting, part of them may have been written. A schedule point even
        when the socket took everything at once (a send is a checkpoint; the caller checked
        for cancellation before).
        """
        self._fd()  # closed here: the xtransport's own message
        if not await write_all(self._socket, buffers):
            await trio.lowlevel.cancel_shielded_checkpoint()


def io_for(stream: trio.abc.Stream) -> ChannelIO:
    """The direct socket path for a :class:`trio.SocketStream`, the generic one otherwise."""
    if isinstance(stream, trio.SocketStream):
        return SocketIO(stream)
    return StreamIO(stream)
