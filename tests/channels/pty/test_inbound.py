"""Who reads the PTY client's socket (virtrio/channels/pty/_inbound.py): a subscriber waiting
for an event reads it itself, the reader task otherwise; nothing is lost or reordered across
the hand-overs. Against a scripted daemon on a socketpair."""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings, strategies as st

from virtrio.channels.pty import (
    NEED_DATA,
    REQUEST_TYPES,
    FrameDecoder,
    List,
    Output,
    PtyClient,
    Sessions,
    encode,
    encode_output,
    open_pty_client,
)
from virtrio.errors import ConfigError, ConnectionLostError

FAIL_AFTER = 5  # seconds: a generous bound on waits that should not wait at all


class FakeDaemon:
    """The daemon's end of the socket: sends what a test tells it, answers ``list``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._decoder = FrameDecoder(accept=REQUEST_TYPES)
        self._sending = trio.StrictFIFOLock()
        self._outbox, self._queued = trio.open_memory_channel[bytes](math.inf)

    async def send(self, data: bytes) -> None:
        async with self._sending:  # (a reply may still be on its way out of its task)
            await self.stream.send_all(data)

    def queue(self, data: bytes) -> None:
        """Send ``data`` after everything queued before, without waiting: a client that
        stops reading (its event queue full) does not block the test, as a real daemon's
        queue per subscriber does not block the daemon (:meth:`write_queued` sends it)."""
        self._outbox.send_nowait(data)

    async def write_queued(self) -> None:
        """Send what :meth:`queue` was given, in order (a task of :func:`connected`)."""
        async for data in self._queued:
            await self.send(data)

    async def answer_lists(self, count: int, then: bytes = b"", *, queued: bool = False) -> None:
        """Answer ``count`` list requests (with ``then`` right behind each reply; after what
        was queued before if ``queued``)."""
        answered = 0
        while answered < count:
            message = self._decoder.next_message()
            if message is NEED_DATA:
                self._decoder.receive_data(await self.stream.receive_some(65536))
                continue
            assert isinstance(message, List), message
            reply = encode(Sessions((), id=message.id)) + then
            if queued:
                self.queue(reply)
            else:
                await self.send(reply)
            answered += 1


@asynccontextmanager
async def connected(max_queue: int = 1024) -> AsyncIterator[tuple[PtyClient, FakeDaemon]]:
    ours, theirs = trio.socket.socketpair()
    stream = trio.SocketStream(ours)
    client = PtyClient(stream, "unix:/fake", call_timeout=10, max_queue=max_queue)
    daemon = FakeDaemon(trio.SocketStream(theirs))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client._inbound.run_reader)
            nursery.start_soon(daemon.write_queued)
            yield client, daemon
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(daemon.stream)


def output(n: int) -> bytes:
    return encode_output(1, b"%d;" % n)


def number(event: object) -> int:
    assert isinstance(event, Output), event
    return int(event.data.rstrip(b";"))


async def test_a_waiting_subscriber_reads_the_socket_itself() -> None:
    async with connected() as (client, daemon):
        received: list[object] = []

        async def receive() -> None:
            received.append(await client.events().receive())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            assert client._inbound._holder == "subscriber"  # the reader task naps
            await daemon.send(output(1))
        assert [number(e) for e in received] == [1]
        assert len(client._events) == 0


async def test_a_reply_read_by_a_subscriber_reaches_its_call() -> None:
    async with connected() as (client, daemon):
        async with trio.open_nursery() as nursery:
            got: list[object] = []

            async def receive() -> None:
                got.append(await client.events().receive())

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(daemon.answer_lists, 1, output(7))
            with trio.fail_after(FAIL_AFTER):
                assert await client.list() == ()
        assert [number(e) for e in got] == [7]


async def test_a_call_right_after_a_subscriber_gave_the_socket_back_is_answered() -> None:
    async with connected() as (client, daemon):
        await daemon.send(output(1))
        with trio.fail_after(FAIL_AFTER):
            assert number(await client.events().receive()) == 1
            # no subscriber holds the socket now and the reader task naps: the call wakes it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(daemon.answer_lists, 1)
                assert await client.list() == ()


async def test_the_reader_task_queues_events_when_nobody_receives() -> None:
    async with connected() as (client, daemon):
        await daemon.send(output(0))
        assert number(await client.events().receive()) == 0
        await daemon.send(b"".join(output(n) for n in range(1, 6)))
        with trio.fail_after(FAIL_AFTER):
            while len(client._events) < 5:  # read within the lending time, by the reader
                await trio.sleep(0.01)
        assert [number(await client.events().receive()) for _ in range(5)] == [1, 2, 3, 4, 5]


async def test_decoding_stops_at_the_queue_bound_and_goes_on_in_order() -> None:
    async with connected(max_queue=2) as (client, daemon):
        await daemon.send(b"".join(output(n) for n in range(50)))  # one chunk, 50 events
        seen = []
        with trio.fail_after(FAIL_AFTER):
            for _ in range(50):
                assert len(client._events) <= 2
                seen.append(number(await client.events().receive()))
                await trio.testing.wait_all_tasks_blocked()
        assert seen == list(range(50))


async def test_a_cancelled_subscriber_loses_nothing() -> None:
    async with connected() as (client, daemon):
        with trio.move_on_after(0.05):
            await client.events().receive()  # reads nothing, gives the socket back
        await daemon.send(output(1) + output(2))
        with trio.fail_after(FAIL_AFTER):
            assert number(await client.events().receive()) == 1
            assert number(await client.events().receive()) == 2


async def test_the_end_of_the_stream_while_a_subscriber_reads() -> None:
    async with connected() as (client, daemon):
        async with trio.open_nursery() as nursery:
            events: list[object] = []

            async def iterate() -> None:
                with client.events() as subscription:
                    async for event in subscription:
                        events.append(event)

            nursery.start_soon(iterate)
            await trio.testing.wait_all_tasks_blocked()
            await daemon.send(output(1) + output(2))
            await daemon.stream.send_eof()
        assert [number(e) for e in events] == [1, 2]
        assert isinstance(client.closed_reason, ConnectionLostError)
        assert "closed the connection" in str(client.closed_reason)
        with pytest.raises(ConnectionLostError):
            await client.events().receive()


async def test_a_bad_frame_read_by_a_subscriber_ends_the_connection() -> None:
    async with connected() as (client, daemon):
        await daemon.send(output(1) + b"\x00\x00\x00\x01\xc1")  # 0xc1: never valid msgpack
        with trio.fail_after(FAIL_AFTER):
            assert number(await client.events().receive()) == 1
            with pytest.raises(ConnectionLostError, match="bad frame"):
                await client.events().receive()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    script=st.lists(
        st.one_of(
            st.tuples(st.just("events"), st.integers(1, 6), st.integers(1, 40)),
            st.tuples(st.just("receive"), st.integers(1, 4), st.booleans()),
            st.tuples(st.just("call"), st.integers(0, 3), st.integers(1, 40)),
            st.tuples(st.just("pause"), st.sampled_from([0.0, 0.0005, 0.003]), st.just(0)),
        ),
        max_size=25,
    ),
    max_queue=st.integers(1, 8),
)
def test_any_interleaving_delivers_every_event_in_order_and_every_reply(
    script: list[tuple[str, float, int]], max_queue: int
) -> None:
    """Events sent in pieces cut anywhere, subscribers receiving (some cancelled while
    waiting), calls whose replies come between events, pauses around the lending time:
    every event arrives once, in order, and every call is answered."""

    async def main() -> None:
        sent = 0
        seen: list[int] = []
        async with (
            connected(max_queue=max_queue) as (client, daemon),
            trio.open_nursery() as nursery,
        ):
            for op, a, b in script:
                if op == "events":
                    wire = b"".join(output(sent + n) for n in range(int(a)))
                    sent += int(a)
                    for at in range(0, len(wire), b):  # pieces of b bytes
                        # (queued: hundreds of tiny writes fill a socketpair's buffer while
                        # the client, its queue full, is not reading)
                        daemon.queue(wire[at : at + b])
                    await trio.lowlevel.checkpoint()  # the writer may start
                elif op == "receive":
                    for _ in range(int(a)):
                        if len(seen) == sent:
                            if b:  # a subscriber waiting when nothing comes: cancelled
                                with trio.move_on_after(0.002):
                                    seen.append(number(await client.events().receive()))
                            break
                        with trio.fail_after(FAIL_AFTER):
                            seen.append(number(await client.events().receive()))
                elif op == "call":
                    # (a reply behind more events than the queue holds waits for room,
                    # by design: receive until it would not)
                    while sent - len(seen) > max_queue:
                        with trio.fail_after(FAIL_AFTER):
                            seen.append(number(await client.events().receive()))
                    behind = b"".join(output(sent + n) for n in range(int(a)))
                    sent += int(a)
                    nursery.start_soon(partial(daemon.answer_lists, 1, behind, queued=True))
                    with trio.fail_after(FAIL_AFTER):
                        assert await client.list() == ()
                else:
                    await trio.sleep(a)
            with trio.fail_after(FAIL_AFTER):
                while len(seen) < sent:
                    seen.append(number(await client.events().receive()))
        assert seen == list(range(sent))

    trio.run(main)


async def test_input_without_waiting_is_a_schedule_point_only_every_16th_call() -> None:
    async with connected() as (client, daemon), trio.open_nursery() as nursery:
        turns = 0

        async def other_task() -> None:
            nonlocal turns
            while True:
                turns += 1
                await trio.lowlevel.checkpoint()

        nursery.start_soon(other_task)
        await trio.lowlevel.checkpoint()
        before = turns
        for _ in range(32):
            await client.input(1, b"x", wait=False)
        assert 1 <= turns - before <= 3  # (every 16th call lets the others run)
        with trio.CancelScope() as scope:  # and every call is a cancel point
            scope.cancel()
            await client.input(1, b"never", wait=False)
        assert scope.cancelled_caught
        received = await daemon.stream.receive_some(65536)
        assert received.count(b"input") == 32
        assert b"never" not in received
        nursery.cancel_scope.cancel()


async def test_after_input_a_subscriber_polls_for_the_echo_once() -> None:
    ours, theirs = trio.socket.socketpair()
    stream = trio.SocketStream(ours)
    client = PtyClient(stream, "unix:/fake", call_timeout=10, max_queue=16, spin=1.0)
    daemon = FakeDaemon(trio.SocketStream(theirs))
    spin = client._inbound._spin
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client._inbound.run_reader)
            await client.input(1, b"a", wait=False)
            os.write(theirs.fileno(), output(1))  # (no checkpoint: the reader cannot read it)
            assert number(await client.events().receive()) == 1
            assert (spin.caught, spin.missed) == (1, 0)  # read by the subscriber's poll
            os.write(theirs.fileno(), output(2))  # no input before it: no poll
            assert number(await client.events().receive()) == 2
            assert (spin.caught, spin.missed) == (1, 0)
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
        await trio.aclose_forcefully(daemon.stream)


async def test_the_spin_must_be_finite_and_not_negative() -> None:
    for spin in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="spin"):
            async with open_pty_client("/nonexistent/socket", spin=spin):
                pass


async def test_the_reader_looks_less_often_while_a_subscriber_keeps_the_socket(
    mock_clock: trio.testing.MockClock,
) -> None:
    """A subscriber iterating a flood comes back for the socket after every event: each look
    of the reader task that finds it held doubles the next one's wait (5 ms up to 160 ms).
    Once the subscriber stops, the reader takes the socket back after that wait and queues
    what comes (and waits 5 ms again next time)."""
    async with connected() as (client, daemon):
        inbound = client._inbound
        received: list[int] = []

        async def iterate() -> None:
            async for event in client.events():
                received.append(number(event))

        lends = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(iterate)
            await trio.testing.wait_all_tasks_blocked()  # it waits with the socket; the reader naps
            for n in range(7):
                await daemon.send(output(n))
                await trio.testing.wait_all_tasks_blocked()
                assert received[-1] == n
                assert inbound._holder == "subscriber"  # waiting for the next one
                mock_clock.jump(inbound._lend)  # the reader's look finds the socket held
                await trio.testing.wait_all_tasks_blocked()
                lends.append(inbound._lend)
            nursery.cancel_scope.cancel()  # the subscriber stops
        assert lends == [0.01, 0.02, 0.04, 0.08, 0.16, 0.16, 0.16]
        await daemon.send(b"".join(output(n) for n in (7, 8)))
        await trio.testing.wait_all_tasks_blocked()
        assert len(client._events) == 0  # the reader still waits
        mock_clock.jump(0.16)
        await trio.testing.wait_all_tasks_blocked()
        assert len(client._events) == 2  # it took the socket back and read
        assert inbound._lend == 0.005
        assert [number(await client.events().receive()) for _ in range(2)] == [7, 8]
