"""A yamux session's inbound streams as a :class:`trio.abc.Listener`: :class:`MuxListener`.

Serve them as sockets are served, each stream in its own task, one stream's failure (a reset,
a handler's bug) never taking the session or another stream::

    async with open_mux(stream, client=False) as session:
        await StreamServer(handle_stream).serve_listeners([MuxListener(session)])
"""

from __future__ import annotations

import trio

from virtrio.errors import ConnectionLostError

from ._frames import GoAwayCode
from ._stream import MuxStream
from ._trio import MuxSession

__all__ = ["MuxListener"]


class MuxListener(trio.abc.Listener[MuxStream]):
    """Accepts the streams the peer opens on ``session``. Closing it sends GoAway (no new
    streams; those open go on); ``accept`` raises :class:`trio.ClosedResourceError` once it is
    closed or the session has ended."""

    def __init__(self, session: MuxSession) -> None:
        self.session = session
        self._closed = False

    async def accept(self) -> MuxStream:
        """The next stream the peer opens.

        Raises:
            trio.ClosedResourceError: the listener was closed, or the session ended.
        """
        if self._closed:
            raise trio.ClosedResourceError("this yamux listener was closed")
        try:
            return await self.session.accept_stream()
        except ConnectionLostError as exc:
            raise trio.ClosedResourceError(str(exc)) from exc

    async def aclose(self) -> None:
        """Stop accepting: GoAway to the peer, if the session still runs."""
        if not self._closed:
            self._closed = True
            if self.session.is_connected:
                await self.session.go_away(GoAwayCode.NORMAL)
                return
        await trio.lowlevel.checkpoint()
