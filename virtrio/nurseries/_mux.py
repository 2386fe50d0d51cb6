"""``vm.mux(name)``: a multiplexed endpoint (yamux) whose streams open through reconnects.

The session underneath is supervised like any channel. ``open_stream()`` and ``accept_stream()``
wait for a connected session up to their deadline, then open (or accept) on it; a stream in
flight when its session drops fails with :class:`~virtrio.errors.ConnectionLostError` (or a
reset), and the next open waits for the reconnect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.channels import Address, open_stream
from virtrio.channels.yamux import MuxSession, MuxStream, open_mux
from virtrio.primitives import Deadline, SupervisedHandle

__all__ = ["SupervisedMux", "open_mux_session"]


@asynccontextmanager
async def open_mux_session(
    address: Address, *, client: bool, connect_timeout: float, name: str
) -> AsyncIterator[MuxSession]:
    """Dial ``address`` and run a yamux session over it."""
    stream = await open_stream(address, connect_timeout=connect_timeout)
    async with open_mux(stream, client=client, name=name, drain_timeout=0.5) as session:
        yield session


class SupervisedMux(SupervisedHandle[MuxSession]):
    """A yamux endpoint valid across reconnects of its session."""

    async def session(self, *, timeout: float | None = None) -> MuxSession:
        """The connected session, waiting for a reconnect up to ``timeout``.

        Raises:
            ChannelUnavailableError: no session within the deadline.
        """
        session, _ = await self._connected(timeout)
        return session

    async def open_stream(self, *, timeout: float | None = None) -> MuxStream:
        """Open a stream on the current session (waiting for one up to ``timeout``).

        Raises:
            ChannelUnavailableError: no session within the deadline.
        """
        session, deadline = await self._connected(timeout)
        with trio.fail_after(deadline.remaining()):
            return await session.open_stream()

    async def accept_stream(self, *, timeout: float | None = None) -> MuxStream:
        """The next stream the peer opens, on whichever session is up (waiting through
        reconnects up to ``timeout``).

        Raises:
            ChannelUnavailableError: no session within the deadline.
            VirtrioTimeoutError: no stream opened by the deadline.
        """
        from virtrio.errors import ConnectionLostError, VirtrioTimeoutError

        limit = self.call_timeout if timeout is None else timeout
        deadline = Deadline.after(limit)
        while True:
            session = await self.session(timeout=deadline.remaining())
            with trio.move_on_after(deadline.remaining()):
                try:
                    return await session.accept_stream()
                except ConnectionLostError:
                    continue  # that session ended: wait for the next one
            raise VirtrioTimeoutError(f"{self.supervisor.name}: no stream within {limit:g} s")

    async def ping(self, *, timeout: float | None = None) -> float:
        """The round trip of a yamux ping on the current session, seconds."""
        session, deadline = await self._connected(timeout)
        return await session.ping(timeout=deadline.remaining())
