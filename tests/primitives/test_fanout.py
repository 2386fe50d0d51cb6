"""The fan-out primitive: bounded per-subscriber queues, pressure notices, overflow policies."""

from __future__ import annotations

import traceback

import pytest
import trio
import trio.testing

from virtrio.errors import ConfigError, ConnectionLostError
from virtrio.primitives import Fanout, Pressure, PressureLevel, SubscriberOverflowError


async def test_every_subscriber_gets_every_item_in_order() -> None:
    fanout: Fanout[int] = Fanout(max_queue=100)
    with fanout.subscribe() as a, fanout.subscribe() as b:
        for i in range(50):
            fanout.publish(i)
        fanout.close()
        assert [i async for i in a] == list(range(50))
        assert [i async for i in b] == list(range(50))


async def test_a_slow_subscriber_never_blocks_the_publisher_or_the_others() -> None:
    fanout: Fanout[int] = Fanout(max_queue=8, warn_remaining=2)
    with fanout.subscribe() as slow, fanout.subscribe(max_queue=1000) as fast:
        for i in range(20):
            fanout.publish(i)  # never blocks
        assert fast.queue_size == 20
        assert slow.queue_size == 8
        assert slow.take_pressure() == Pressure(PressureLevel.YELLOW, 8)  # then it overflowed
        notice = slow.take_pressure()
        assert notice is not None
        assert notice.level is PressureLevel.RED
        assert notice.dropped == 12  # counted, never silent
        assert slow.take_pressure() is None
        assert [await slow.receive() for _ in range(8)] == list(range(8))


async def test_yellow_before_red() -> None:
    fanout: Fanout[int] = Fanout(max_queue=10, warn_remaining=4)
    with fanout.subscribe() as sub:
        for i in range(6):
            fanout.publish(i)
        assert sub.take_pressure() is None
        fanout.publish(6)  # 3 free < 4
        notice = sub.take_pressure()
        assert notice is not None
        assert (notice.level, notice.queue_size) == (PressureLevel.YELLOW, 7)


async def test_disconnect_policy() -> None:
    fanout: Fanout[int] = Fanout(max_queue=3, overflow="disconnect")
    with fanout.subscribe() as slow, fanout.subscribe(max_queue=10) as other:
        for i in range(5):
            fanout.publish(i)
        assert fanout.subscriber_count == 1
        assert [await slow.receive() for _ in range(3)] == [0, 1, 2]
        with pytest.raises(SubscriberOverflowError, match="queue of 3 items overflowed"):
            await slow.receive()
        assert other.queue_size == 5


async def test_close_with_an_error_reaches_every_subscriber_after_its_items() -> None:
    fanout: Fanout[str] = Fanout()
    with fanout.subscribe() as sub:
        fanout.publish("last words")
        fanout.close(ConnectionLostError("gone"))
        assert await sub.receive() == "last words"
        with pytest.raises(ConnectionLostError, match="gone"):
            await sub.receive()
    with fanout.subscribe() as late, pytest.raises(ConnectionLostError):
        await late.receive()
    fanout.publish("more")  # after close: nothing, and no error (producers outlive listeners)
    with fanout.subscribe() as later, pytest.raises(ConnectionLostError):
        await later.receive()


async def test_each_subscriber_raises_its_own_copy_of_the_close_error() -> None:
    fanout: Fanout[str] = Fanout()
    cause = OSError("reset by peer")
    error = ConnectionLostError("gone", address="unix:/x")
    error.__cause__ = cause
    with fanout.subscribe() as a, fanout.subscribe() as b:
        fanout.close(error)
        raised = []
        for sub in (a, b, a):
            with pytest.raises(ConnectionLostError, match="gone") as info:
                await sub.receive()
            raised.append(info.value)
    assert len({id(e) for e in raised}) == 3
    assert error not in raised
    assert all(e.address == "unix:/x" and e.__cause__ is cause for e in raised)
    # each traceback holds only its own raise, not the other subscribers' frames
    depths = {len(traceback.extract_tb(e.__traceback__)) for e in raised}
    assert len(depths) == 1


async def test_filters_cost_no_queue_room() -> None:
    fanout: Fanout[int] = Fanout(max_queue=2)
    with fanout.subscribe(accept=lambda i: i % 10 == 0) as tens:
        for i in range(20):
            fanout.publish(i)
        assert tens.take_pressure() is None
        assert [await tens.receive() for _ in range(2)] == [0, 10]


async def test_unsubscribing_stops_delivery() -> None:
    fanout: Fanout[int] = Fanout()
    sub = fanout.subscribe()
    sub.close()
    fanout.publish(1)
    assert fanout.subscriber_count == 0


async def test_a_waiting_receiver_wakes_on_publish() -> None:
    fanout: Fanout[int] = Fanout()
    with fanout.subscribe() as sub:
        async with trio.open_nursery() as nursery:
            result = []

            async def receive() -> None:
                result.append(await sub.receive())

            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()  # the receiver waits in receive()
            fanout.publish(42)
        assert result == [42]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_queue": 0}, "max_queue"),
        ({"max_queue": 4, "warn_remaining": 5}, "warn_remaining"),
        ({"overflow": "explode"}, "overflow"),
    ],
)
def test_invalid_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Fanout(**kwargs)  # type: ignore[arg-type]


async def test_on_overflow_tells_the_owner_at_once() -> None:
    fanout: Fanout[int] = Fanout(max_queue=2, warn_remaining=0, overflow="disconnect")
    dropped: list[str] = []
    with (
        fanout.subscribe(on_overflow=lambda: dropped.append("slow")) as slow,
        fanout.subscribe(max_queue=10, on_overflow=lambda: dropped.append("fast")) as fast,
    ):
        fanout.publish(1)
        fanout.publish(2)
        assert dropped == []
        fanout.publish(3)  # the slow one overflows: its owner hears it now, not after a drain
        assert dropped == ["slow"]
        fanout.publish(4)
        assert dropped == ["slow"]  # once
        assert [await slow.receive(), await slow.receive()] == [1, 2]
        with pytest.raises(SubscriberOverflowError):
            await slow.receive()
        assert fast.queue_size == 4


def test_on_pressure_tells_the_owner_as_the_queue_fills_not_when_it_is_read() -> None:
    fanout: Fanout[int] = Fanout(max_queue=4, warn_remaining=2)
    heard: list[tuple[PressureLevel, bool, int]] = []
    with fanout.subscribe(on_pressure=lambda *notice: heard.append(notice)) as sub:
        for item in range(3):
            fanout.publish(item)
        assert heard == [(PressureLevel.YELLOW, True, 0)]  # once per episode, not per item
        for item in range(3, 7):
            fanout.publish(item)
        # full at 4: three drops, one red notice raised by the first of them
        red = PressureLevel.RED
        assert heard[1:] == [(red, True, 1), (red, False, 1), (red, False, 1)]
        assert [p.level for p in iter(sub.take_pressure, None)] == [
            PressureLevel.YELLOW,
            PressureLevel.RED,
        ]
        fanout.publish(7)
        assert heard[-1] == (PressureLevel.RED, True, 1)  # a new red notice once one was taken


async def test_a_size_function_bounds_the_queue_in_bytes_not_items() -> None:
    """Issue 17: a count bound let a never-reading subscriber pin 16384 chunks of any size."""
    fanout: Fanout[bytes] = Fanout(max_queue=1000, warn_remaining=300, size=len)
    with fanout.subscribe() as slow, fanout.subscribe() as fast:
        for _ in range(8):
            fanout.publish(b"x" * 100)
            assert await fast.receive() == b"x" * 100
        assert slow.queue_size == 800  # bytes, not items
        assert slow.take_pressure() == Pressure(PressureLevel.YELLOW, 800)
        fanout.publish(b"y" * 250)  # does not fit: dropped for the slow one alone
        fanout.publish(b"z" * 200)  # fits exactly
        fanout.publish(b"w")
        assert slow.queue_size == 1000
        assert slow.take_pressure() == Pressure(PressureLevel.RED, 1000, dropped=251)
        assert [len(await slow.receive()) for _ in range(9)] == [100] * 8 + [200]
        assert slow.queue_size == 0
        assert fast.queue_size == 451


async def test_an_empty_queue_takes_an_item_larger_than_the_bound() -> None:
    fanout: Fanout[bytes] = Fanout(max_queue=10, size=len)
    with fanout.subscribe() as sub:
        fanout.publish(b"a" * 50)  # an empty queue always makes progress
        fanout.publish(b"b")
        assert sub.queue_size == 50
        assert sub.receive_nowait() == b"a" * 50
        assert sub.take_pressure() == Pressure(PressureLevel.YELLOW, 50)
        assert sub.take_pressure() == Pressure(PressureLevel.RED, 50, dropped=1)


async def test_a_subscriber_that_goes_frees_its_queue_at_once() -> None:
    fanout: Fanout[bytes] = Fanout(max_queue=1 << 20, size=len)
    sub = fanout.subscribe()
    for _ in range(16):
        fanout.publish(bytes(65536))
    assert sub.queue_size == 1 << 20
    assert sub._receive.statistics().current_buffer_used == 16
    sub.close()
    assert fanout.subscriber_count == 0
    assert sub._receive.statistics().current_buffer_used == 0
    fanout.publish(b"after")  # nobody is subscribed: nothing is kept
    assert sub.queue_size == 0


async def test_disconnect_policy_with_a_size_names_the_units() -> None:
    fanout: Fanout[bytes] = Fanout(max_queue=4, size=len, overflow="disconnect")
    with fanout.subscribe() as sub:
        fanout.publish(b"abc")
        fanout.publish(b"de")
        assert sub.receive_nowait() == b"abc"
        with pytest.raises(SubscriberOverflowError, match="queue of 4 units overflowed"):
            sub.receive_nowait()


async def test_receive_nowait_on_a_closed_subscription_ends_it() -> None:
    """What ``receive`` does; a forwarder batching with receive_nowait while its subscriber
    detaches used to get a ClosedResourceError (and the PTY daemon dropped the connection)."""
    fanout: Fanout[int] = Fanout()
    sub = fanout.subscribe()
    fanout.publish(1)
    sub.close()
    with pytest.raises(trio.EndOfChannel):
        sub.receive_nowait()
    with pytest.raises(trio.EndOfChannel):
        await sub.receive()
    assert sub.queue_size == 0
