"""What a session on a socket has still to send: :class:`Outbox`.

Frames are written at once by whichever task has them (:mod:`._trio`); what the socket does
not take waits here, and so does every frame queued behind it, until the writer task has
sent it all. The buffers wait as they are where nobody can change them (headers, the core's
bytes, views of a caller's ``bytes``), so a Data frame queued behind a full socket is not
copied; a view of anything else (a ``bytearray`` its owner may reuse once its send returns)
is copied when it is queued.
"""

from __future__ import annotations

import itertools
from collections import deque

from ._session import YamuxSession
from ._wire import IOV_MAX, Buffer, Wire

__all__ = ["Outbox"]


class Outbox:
    """Buffers waiting for the socket, in order, ahead of what the core has queued."""

    def __init__(self, wire: Wire, core: YamuxSession) -> None:
        self._wire = wire
        self._core = core
        self._queue: deque[Buffer] = deque()
        #: Bytes waiting here.
        self.size = 0

    def add(self, buffers: list[Buffer], sent: int) -> None:
        """Queue ``buffers`` but their first ``sent`` bytes (which the socket took). The first
        buffer is the core's (from ``data_to_send``) or a frame's header; any other may be
        borrowed from a caller."""
        queue = self._queue
        for index, buffer in enumerate(buffers):
            size = len(buffer)
            if sent >= size:
                sent -= size
                continue
            if index and type(buffer) is memoryview and type(buffer.obj) is not bytes:
                buffer = bytes(buffer[sent:])  # its owner may change it: a copy
            elif sent:
                buffer = memoryview(buffer)[sent:]
            sent = 0
            queue.append(buffer)
            self.size += len(buffer)

    async def send(self) -> None:
        """Send everything waiting, many buffers per write, and what the core queues
        meanwhile (after it: a FIN leaves after its stream's data), until both are empty.

        Raises:
            OSError: the socket broke.
        """
        queue = self._queue
        wire = self._wire
        core = self._core
        while True:
            if core.bytes_queued:
                self.add([core.data_to_send()], 0)
            if not queue:
                return
            sent = wire.write_some(list(itertools.islice(queue, IOV_MAX)))
            if not sent:
                await wire.wait_writable()
                continue
            self.size -= sent
            while sent:
                first = queue[0]
                if len(first) <= sent:
                    sent -= len(first)
                    queue.popleft()
                else:
                    queue[0] = memoryview(first)[sent:]
                    sent = 0
