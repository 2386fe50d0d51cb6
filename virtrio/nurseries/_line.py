"""A supervised line-oriented channel (serial console, virtio-serial port) that records output.

Every byte received since the channel first connected is kept in a :class:`~._recorder.Recorder`
(bounded), so ``expect(pattern, after=mark)`` sees output that arrived before the wait began and
never output from before the mark::

    console = vm.channel("console")
    mark = console.mark()
    await console.send(b"uname -a\\n")
    match = await console.expect(re.compile(rb"Linux \\S+"), after=mark, timeout=10)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import SupervisedHandle, Supervisor, open_service_nursery

from ._recorder import Mark, Match, Pattern, Recorder, compile_pattern

__all__ = ["LineChannel", "StreamConnection", "open_recorded_stream"]


class StreamConnection:
    """One connection of a line channel: bytes in go to the recorder, ``send_all`` goes out."""

    def __init__(self, stream: trio.abc.Stream, name: str) -> None:
        self.stream = stream
        self.name = name
        self.closed_reason: BaseException | None = None
        self._closed = trio.Event()
        self._send_lock = trio.Lock()

    @property
    def is_connected(self) -> bool:
        """False once the stream ended or failed."""
        return not self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return once the stream ended or failed."""
        await self._closed.wait()

    async def send_all(self, data: bytes) -> None:
        """Send ``data`` (callers are serialised).

        Raises:
            ConnectionLostError: the stream is gone.
        """
        async with self._send_lock:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._end(ConnectionLostError(f"channel {self.name}: cannot send: {exc}"))
                raise self.closed_reason from exc  # type: ignore[misc]

    def _end(self, reason: BaseException) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._closed.set()


@asynccontextmanager
async def open_recorded_stream(
    connect: Callable[[], Awaitable[trio.abc.Stream]],
    recorder: Recorder,
    on_data: Callable[[int, bytes | bytearray], None],
    name: str,
) -> AsyncIterator[StreamConnection]:
    """Connect with ``connect`` and pump what arrives into ``recorder`` (then ``on_data(offset,
    data)``) until the stream ends."""
    stream = await connect()
    connection = StreamConnection(stream, name)

    async def pump() -> None:
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    connection._end(ConnectionLostError(f"channel {name}: peer closed"))
                    return
                offset = recorder.end
                recorder.feed(data)
                on_data(offset, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            connection._end(ConnectionLostError(f"channel {name}: {exc}"))

    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(pump)
            try:
                yield connection
            finally:
                nursery.cancel_scope.cancel()
    finally:
        connection._end(ConnectionLostError(f"channel {name}: closed"))
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)


class LineChannel(SupervisedHandle[StreamConnection]):
    """The handle of a line-oriented channel, valid across reconnects (``vm.channel(name)``)."""

    def __init__(
        self, supervisor: Supervisor[StreamConnection], recorder: Recorder, call_timeout: float
    ) -> None:
        super().__init__(supervisor, call_timeout)
        #: Every byte received since the channel first connected (bounded).
        self.recorder = recorder
        self._arrived = trio.Event()
        self._listeners: list[Callable[[int, int], None]] = []

    def _notify(self, offset: int, data: bytes | bytearray) -> None:
        self._arrived.set()
        self._arrived = trio.Event()
        for listener in self._listeners:
            listener(offset, offset + len(data))

    def add_output_listener(self, listener: Callable[[int, int], None]) -> None:
        """Call ``listener(start, end)`` with the byte offsets of each read's output (one call
        per read, not per byte; offsets are :meth:`mark` positions). It must not block."""
        self._listeners.append(listener)

    @property
    def name(self) -> str:
        """``VM/channel``."""
        return self.supervisor.name

    def mark(self) -> Mark:
        """The output position now; pass it as ``after=`` to :meth:`expect`."""
        return self.recorder.mark()

    def output(self, after: Mark | None = None) -> bytes:
        """The recorded output from ``after`` (default: all that is still kept).

        Raises:
            MarkExpiredError: ``after`` fell out of the window.
        """
        return self.recorder.data(after)

    async def send(self, data: bytes | str, *, timeout: float | None = None) -> None:
        """Send ``data`` (a ``str`` as UTF-8), waiting for a reconnect up to the deadline.

        Raises:
            ChannelUnavailableError: not connected in time.
            ConnectionLostError: the connection dropped while sending.
        """
        payload = data.encode() if isinstance(data, str) else data
        connection, deadline = await self._connected(timeout)
        with trio.fail_after(deadline.remaining()):
            await connection.send_all(payload)

    async def expect(
        self,
        pattern: Pattern,
        *,
        after: Mark | None = None,
        timeout: float | None = None,
    ) -> Match:
        """Wait for ``pattern`` (a literal or a regex) in the output at or after ``after``
        (default: the position now) and return where it matched.

        A regex is matched against everything from the mark each time output arrives, so a
        match may span any number of reads; the earliest match wins.

        Raises:
            VirtrioTimeoutError: no match by the deadline (the message shows the output's tail).
            MarkExpiredError: the mark fell out of the recorded window.
        """
        regex = compile_pattern(pattern)
        start = self.recorder.mark() if after is None else after
        limit = self.call_timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            while True:
                arrived = self._arrived
                found = self.recorder.find(regex, start)
                if found is not None:
                    return found
                await arrived.wait()
        tail = self.recorder.data(max(start.offset, self.recorder.end - 200))
        raise VirtrioTimeoutError(
            f"channel {self.name}: {regex.pattern!r} not seen after byte {start.offset} "
            f"within {limit:g} s (last output: {tail!r})"
        )
