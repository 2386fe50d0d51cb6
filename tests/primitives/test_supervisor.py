"""The supervisor's reconnect loop (in virtual time, with a stand-in connection: this tests the
loop itself; the real channels are tested under it in test_vm.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from virtrio.channels.spice import SpicePermissionError
from virtrio.errors import (
    AuthenticationError,
    ChannelUnavailableError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    ProtocolError,
    UnsupportedVersionError,
    VirtrioTimeoutError,
)
from virtrio.primitives import Backoff, ChannelState, StateChange, Supervisor, is_transient


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
        await trio.sleep(0.5)  # virtual time (autojump_clock): within the first 1 s backoff
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


class Refusing:
    """A peer whose every connect fails with ``error``; counts the attempts."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.attempts = 0

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        self.attempts += 1
        raise self.error
        yield Link(0)  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("bad address 'bogus'"),
        AuthenticationError("wrong password"),
        UnsupportedVersionError("peer speaks version 3"),
        ConnectError("cannot connect: Permission denied", address="unix:/x"),
        TypeError("a bug in our code"),
    ],
    ids=["config", "auth", "version", "eacces", "bug"],
)
async def test_a_permanent_failure_stops_the_channel_and_calls_fail_at_once(
    error: Exception, autojump_clock: trio.abc.Clock
) -> None:
    if isinstance(error, ConnectError):
        error.__cause__ = PermissionError(13, "Permission denied")
    peer = Refusing(error)
    supervisor = Supervisor("vm/test", peer.connect, backoff=Backoff(1, 8, jitter=0))
    with supervisor.events.subscribe() as sub:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            await trio.testing.wait_all_tasks_blocked()
            assert supervisor.state is ChannelState.FAILED
            assert supervisor.failed is error
            start = trio.current_time()
            with pytest.raises(type(error)) as first:
                await supervisor.wait_connected(timeout=30)
            with pytest.raises(type(error)) as second:
                await supervisor.wait_connected(timeout=30)
            assert trio.current_time() == start  # at once, not after the deadline
            assert first.value is not second.value
            assert str(first.value) == str(error)
            await trio.sleep(100)
            assert peer.attempts == 1  # never retried
            nursery.cancel_scope.cancel()
        changes = [sub.receive_nowait() for _ in range(sub.queue_size)]
    assert states(changes) == [ChannelState.CONNECTING, ChannelState.FAILED]
    assert changes[-1].error is error
    assert supervisor.state is ChannelState.FAILED  # cancelling afterwards keeps the verdict


async def test_a_waiter_is_woken_by_the_failure(autojump_clock: trio.abc.Clock) -> None:
    class Slow(Refusing):
        @asynccontextmanager
        async def connect(self) -> AsyncIterator[Link]:
            await trio.sleep(5)
            async with super().connect() as link:
                yield link

    supervisor = Supervisor("vm/test", Slow(AuthenticationError("denied")).connect)
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        start = trio.current_time()
        with pytest.raises(AuthenticationError):
            await supervisor.wait_connected(timeout=60)
        assert trio.current_time() - start < 60
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "error",
    [
        ConnectError("refused", address="unix:/x"),
        ConnectionLostError("peer hung up"),
        VirtrioTimeoutError("no greeting"),
        ProtocolError("garbage from a peer that may be restarted"),
        ConnectionResetError(104, "reset"),
        trio.BrokenResourceError("peer hung up"),
    ],
    ids=["refused", "lost", "timeout", "protocol", "reset", "broken"],
)
async def test_a_transient_failure_is_retried(
    error: Exception, autojump_clock: trio.abc.Clock
) -> None:
    peer = Refusing(error)
    supervisor = Supervisor("vm/test", peer.connect, backoff=Backoff(1, 1, jitter=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        with pytest.raises(ChannelUnavailableError) as info:
            await supervisor.wait_connected(timeout=10.5)
        assert info.value.last_error is error
        assert peer.attempts == 11  # at 0, 1, ..., 10
        assert supervisor.state is ChannelState.DISCONNECTED
        nursery.cancel_scope.cancel()


async def test_a_lost_connection_with_a_permanent_reason_fails_the_channel(
    autojump_clock: trio.abc.Clock,
) -> None:
    peer = Peer()
    supervisor = Supervisor("vm/test", peer.connect, backoff=Backoff(1, 1, jitter=0))
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        link = await supervisor.wait_connected(timeout=1)
        link.closed_reason = AssertionError("reader task bug")
        link._dropped.set()
        await trio.testing.wait_all_tasks_blocked()
        assert supervisor.state is ChannelState.FAILED
        with pytest.raises(AssertionError, match="reader task bug"):
            await supervisor.wait_connected(timeout=5)
        assert len(peer.links) == 1
        nursery.cancel_scope.cancel()


async def test_the_rule_is_overridable(autojump_clock: trio.abc.Clock) -> None:
    # a caller that knows its peer: retry even a ConfigError (say, a socket path that a
    # provisioning step is about to fix), and give up on the first refused connect
    retry_all = Refusing(ConfigError("not yet"))
    patient = Supervisor("a", retry_all.connect, transient=lambda e: True)
    refused = Refusing(ConnectError("refused", address="unix:/x"))
    strict = Supervisor("b", refused.connect, transient=lambda e: False)
    async with trio.open_nursery() as nursery:
        await nursery.start(patient.run)
        await nursery.start(strict.run)
        await trio.sleep(10)
        assert patient.state is ChannelState.DISCONNECTED
        assert retry_all.attempts > 1
        assert strict.state is ChannelState.FAILED
        assert refused.attempts == 1
        nursery.cancel_scope.cancel()


def test_the_default_rule() -> None:
    assert not is_transient(ConfigError("x"))
    assert not is_transient(SpicePermissionError("wrong password", 7))
    assert not is_transient(KeyError("bug"))
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(trio.TooSlowError())
    assert is_transient(ExceptionGroup("two", [ConnectionLostError("a"), OSError("b")]))
    assert not is_transient(ExceptionGroup("mixed", [ConnectionLostError("a"), ValueError("b")]))
