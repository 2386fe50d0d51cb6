"""Deadline: one deadline shared by several waits; an infinite one stays infinite."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from virtrio.primitives import Deadline


async def test_remaining_counts_down_to_zero_and_never_below(
    autojump_clock: trio.testing.MockClock,
) -> None:
    deadline = Deadline.after(5)
    assert not deadline.expired
    await trio.sleep(2)
    assert deadline.remaining() == pytest.approx(3)
    await trio.sleep(10)
    assert deadline.remaining() == 0.0
    assert deadline.expired


async def test_an_infinite_deadline_stays_infinite(autojump_clock: trio.testing.MockClock) -> None:
    deadline = Deadline.after(math.inf)
    assert deadline.at == math.inf
    await trio.sleep(86_000)
    assert deadline.remaining() == math.inf
    assert not deadline.expired
    with trio.move_on_at(deadline.at) as scope:
        await trio.sleep(86_000)
    assert not scope.cancelled_caught


async def test_a_past_deadline_is_expired_with_nothing_left() -> None:
    for timeout in (0.0, -1.0, -math.inf):
        deadline = Deadline.after(timeout)
        assert deadline.expired
        assert deadline.remaining() == 0.0


async def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        Deadline.after(math.nan)


async def test_move_on_at_the_deadline_fires_at_it(autojump_clock: trio.testing.MockClock) -> None:
    deadline = Deadline.after(3)
    with trio.move_on_at(deadline.at) as scope:
        await trio.sleep(1)
        assert deadline.remaining() == pytest.approx(2)
        await trio.sleep_forever()
    assert scope.cancelled_caught
    assert deadline.expired


@given(st.floats(0, 1e6), st.floats(0, 1e6))
def test_remaining_is_the_timeout_less_the_time_elapsed(timeout: float, elapsed: float) -> None:
    async def main() -> tuple[float, bool]:
        deadline = Deadline.after(timeout)
        await trio.sleep(elapsed)
        return deadline.remaining(), deadline.expired

    remaining, expired = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert remaining == pytest.approx(max(0.0, timeout - elapsed), abs=1e-6)
    assert remaining >= 0.0
    assert expired == (elapsed >= timeout) or math.isclose(elapsed, timeout)
