"""Reading and writing a Trio socket's descriptor directly: :class:`DirectReads`,
:func:`write_all`.

Trio's ``receive_some`` tries a read first and takes a checkpoint after it, so a reply that
usually is not there yet costs a failed system call, an exception and two trips through the
scheduler. After a short read the socket is most likely empty, so this waits first; after a
full one it reads at once. A read needs no trip through the scheduler after it, only every
:data:`READS_WITHOUT_YIELD` th in a row, so a peer that floods the connection cannot starve the
other tasks::

    reads = DirectReads(stream.socket)
    data = await reads.read(65536)            # b"" at the end of the stream

The QMP/QGA correlator, the PTY client and the PTY daemon's connections read this way.
:func:`write_all` hands many buffers to one ``writev`` as they lie (no join, no copy), waiting
only while the socket is full; xtransport and the PTY daemon write this way.
"""

from __future__ import annotations

import os

import trio

from ._spin import SpinPolicy

__all__ = ["IOV_MAX", "READS_WITHOUT_YIELD", "DirectReads", "write_all"]

#: Reads in a row without passing through the scheduler (data kept coming): then one yields.
READS_WITHOUT_YIELD = 16
#: Buffers one writev takes at most (Linux's IOV_MAX); the rest go in the next call.
IOV_MAX = 1024


class DirectReads:
    """Reads of ``socket`` (a connected Trio socket) through its descriptor (see the module).

    ``drained`` starts true when nothing is expected yet (the first read waits).
    """

    __slots__ = ("_in_a_row", "drained", "socket")

    def __init__(self, socket: trio.socket.SocketType, *, drained: bool = True) -> None:
        self.socket = socket
        #: The last read took less than it asked for: the socket is most likely empty now.
        self.drained = drained
        self._in_a_row = 0

    def waited(self) -> None:
        """The caller waited for the socket to be readable itself: the next read goes at once."""
        self.drained = False
        self._in_a_row = 0

    async def read(
        self,
        max_bytes: int,
        *,
        settle: bool = True,
        spin: SpinPolicy | None = None,
        ready_ok: int = 0,
    ) -> bytes:
        """Up to ``max_bytes`` bytes, ``b""`` at the end of the stream.

        A checkpoint before reading (cancellation, deadlines); with ``settle=False`` the yield
        that every :data:`READS_WITHOUT_YIELD` th read owes is left to :meth:`settle` (for a
        caller that dispatches the bytes first). With ``spin``, a read that would wait polls
        the socket for the policy's window first (bounded by the enclosing deadline); bytes
        caught so count as a read in a row (no pass through the scheduler). ``ready_ok`` as
        :meth:`SpinPolicy.poll_call`'s.

        Raises:
            trio.ClosedResourceError: the socket was closed here.
            OSError: the connection broke.
        """
        sock = self.socket
        if self.drained and (fd := sock.fileno()) >= 0:
            if spin is not None:
                await trio.lowlevel.checkpoint_if_cancelled()  # (before: nothing read is lost)
                deadline = trio.current_effective_deadline()
                data = spin.poll(fd, max_bytes, deadline, ready_ok=ready_ok)
                if data is not None:
                    return await self._took(data, max_bytes, settle)
            # (still drained if this wait is cancelled: the socket is as empty)
            self._in_a_row = 0
            await trio.lowlevel.wait_readable(sock)
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if (fd := sock.fileno()) < 0:
                raise trio.ClosedResourceError("the socket was closed")
            try:
                data = os.read(fd, max_bytes)
            except BlockingIOError:
                self._in_a_row = 0
                await trio.lowlevel.wait_readable(sock)
                continue
            break
        return await self._took(data, max_bytes, settle)

    async def _took(self, data: bytes, max_bytes: int, settle: bool) -> bytes:
        self.drained = len(data) < max_bytes
        self._in_a_row += 1
        if settle:
            await self.settle()
        return data

    async def settle(self) -> None:
        """Yield if this was the :data:`READS_WITHOUT_YIELD` th read in a row."""
        if self._in_a_row >= READS_WITHOUT_YIELD:
            self._in_a_row = 0
            await trio.lowlevel.cancel_shielded_checkpoint()


async def write_all(socket: trio.socket.SocketType, buffers: list[bytes | memoryview]) -> bool:
    """Write every buffer, in order, with ``writev`` as far as the socket takes them, waiting
    while it is full; ``buffers`` is emptied. True if it had to wait (a schedule point was
    taken); a caller that owes one otherwise takes it itself. Cancelled while waiting, part of
    them may have been written (what is left stays in ``buffers``).

    Raises:
        trio.ClosedResourceError: the socket was closed here.
        OSError: the connection broke.
    """
    waited = False
    while buffers:
        if (fd := socket.fileno()) < 0:
            raise trio.ClosedResourceError("the socket was closed")
        batch = buffers[:IOV_MAX] if len(buffers) > IOV_MAX else buffers
        try:
            sent = os.writev(fd, batch)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(socket)
            waited = True
            continue
        if sent == sum(map(len, batch)):  # the usual case: all of it, no loop in Python
            del buffers[: len(batch)]
            continue
        done = 0
        for buffer in buffers:  # drop what went; cut the buffer the write ended in
            size = len(buffer)
            if sent < size:
                if sent:
                    buffers[done] = memoryview(buffer)[sent:]
                break
            sent -= size
            done += 1
        del buffers[:done]
    return waited
