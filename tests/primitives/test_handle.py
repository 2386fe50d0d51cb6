"""The one supervised-handle base: waits up to the call's deadline, fails at once on FAILED."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.primitives.test_supervisor import Link, Peer, Refusing
from virtrio.errors import AuthenticationError, ChannelUnavailableError
from virtrio.primitives import (
    Backoff,
    ChannelState,
    Fanout,
    StateChange,
    SupervisedHandle,
    Supervisor,
)


class HostDown(ChannelUnavailableError):
    """A handle's own flavour of unavailability."""


class Handle(SupervisedHandle[Link]):
    unavailable_error = HostDown

    async def number(self, *, timeout: float | None = None) -> int:
        link, _ = await self._connected(timeout)
        return int(link.number)


async def test_a_call_waits_for_a_reconnect_then_gives_up_with_the_last_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    peer = Peer()
    shared: Fanout[StateChange] = Fanout()
    other = Supervisor("vm/other", Peer().connect, events=shared)
    supervisor = Supervisor("vm/a", peer.connect, backoff=Backoff(1, 1, jitter=0), events=shared)
    handle = Handle(supervisor, call_timeout=5)
    with handle.state_changes() as mine:
        async with trio.open_nursery() as nursery:
            await nursery.start(other.run)
            await nursery.start(supervisor.run)
            assert await handle.number() == 0
            assert handle.is_connected
            assert handle.state is ChannelState.CONNECTED
            peer.down = True
            peer.links[0].drop("gone")
            await trio.testing.wait_all_tasks_blocked()
            assert not handle.is_connected
            start = trio.current_time()
            with pytest.raises(HostDown, match="not connected after 5 s") as info:
                await handle.number()
            assert trio.current_time() - start == pytest.approx(5)
            assert info.value.last_error is not None
            peer.down = False
            assert await handle.number(timeout=3) == 1  # back within the backoff bound
            nursery.cancel_scope.cancel()
        seen = [mine.receive_nowait() for _ in range(mine.queue_size)]
    assert {c.channel for c in seen} == {"vm/a"}  # not the other channel on the same fanout


async def test_a_failed_channel_fails_every_call_at_once(autojump_clock: trio.abc.Clock) -> None:
    error = AuthenticationError("wrong password")
    handle = Handle(Supervisor("vm/a", Refusing(error).connect), call_timeout=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(handle.supervisor.run)
        start = trio.current_time()
        for _ in range(3):
            with pytest.raises(AuthenticationError, match="wrong password"):
                await handle.number()
        with pytest.raises(AuthenticationError):
            await handle.wait_connected()
        assert trio.current_time() == start
        assert handle.state is ChannelState.FAILED
        assert handle.last_error is error
        nursery.cancel_scope.cancel()
