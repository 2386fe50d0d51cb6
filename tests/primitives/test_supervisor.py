"""The supervisor's reconnect loop (in virtual time, with a stand-in connection: this tests the
loop itself; the real channels are tested under it in test_vm.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from virtrio.errors import ChannelUnavailableError, ConnectError
from virtrio.primitives import Backoff, ChannelState, StateChange, Supervisor


class Link:
    """A connection that lives until :meth:`drop` is called."""

    def __init__(self, number: int) -> None:
        self.number = number
        self._dropped = trio.Event()
        self.closed_reason: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        return not self._dropped.is_set()

    def drop(self, reason: str) -> None:
        self.closed_reason = ConnectionError(reason)
        self._dropped.set()

    async def wait_closed(self) -> None:
        await self._dropped.wait()


class Peer:
    """Refuses connections while ``down``; hands out numbered links otherwise."""

    def __init__(self) -> None:
        self.down = False
        self.attempts: list[float] = []
        self.links: list[Link] = []

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        self.attempts.append(trio.current_time())
        if self.down:
            raise ConnectError("refused", address="test:peer")
        link = Link(len(self.links))
        self.links.append(link)
        yield link


def states(changes: list[StateChange]) -> list[ChannelState]:
    return [c.state for c in changes]


async def test_connects_reconnects_with_backoff_and_publishes_states(
    autojump_clock: trio.abc.Clock,
) -> None:
    peer = Peer()
    supervisor = Supervisor("vm/test", peer.connect, backoff=Backoff(1, 8, jitter=0))
    changes: list[StateChange] = []
    sub = supervisor.events.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        first = await supervisor.wait_connected(timeout=1)
        assert first.number == 0
        peer.down = True
        first.drop("peer went away")
        await trio.sleep(0.5)
        assert supervisor.state is ChannelState.DISCONNECTED
        assert supervisor.client is None
        await trio.sleep(10)  # attempts at +1, +3 (1+2), +7 (1+2+4) all refused
        peer.down = False
        second = await supervisor.wait_connected(timeout=20)
        assert second.number == 1
        nursery.cancel_scope.cancel()
    with contextlib.suppress(trio.WouldBlock):
        while True:
            changes.append(sub.receive_nowait())
    gaps = [round(b - a, 3) for a, b in zip(peer.attempts[1:], peer.attempts[2:], strict=False)]
    assert gaps == [2, 4, 8]  # the first retry came 1 s after the drop
    assert states(changes)[:4] == [
        ChannelState.CONNECTING,
        ChannelState.CONNECTED,
        ChannelState.DISCONNECTED,
        ChannelState.RECONNECTING,
    ]
    lost = changes[2]
    assert str(lost.error) == "peer went away"
    assert lost.retry_in == 1
    assert changes[-1].state is ChannelState.CLOSED
    assert ChannelState.CONNECTED in states(changes)[4:]


async def test_a_call_waits_for_the_reconnect_up_to_its_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    peer = Peer()
    supervisor = Supervisor("vm/test", peer.connect, backoff=Backoff(5, 5, jitter=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        (await supervisor.wait_connected()).drop("boom")
        start = trio.current_time()
        with pytest.raises(
            ChannelUnavailableError, match=r"vm/test not connected after 2 s: boom"
        ) as info:
            await supervisor.wait_connected(timeout=2)
        assert trio.current_time() - start == pytest.approx(2)
        assert str(info.value.last_error) == "boom"
        link = await supervisor.wait_connected(timeout=10)  # reconnects at +5 s
        assert link.number == 1
        nursery.cancel_scope.cancel()


async def test_cancelling_the_owner_stops_everything_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    peer = Peer()
    peer.down = True
    supervisor = Supervisor("vm/test", peer.connect)
    with trio.move_on_after(30):
        await supervisor.run()
    assert supervisor.state is ChannelState.CLOSED
    with pytest.raises(ChannelUnavailableError, match="stopped: refused"):
        await supervisor.wait_connected(timeout=1)
