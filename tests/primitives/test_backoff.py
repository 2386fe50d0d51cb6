"""Backoff delays."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from virtrio.errors import ConfigError
from virtrio.primitives import Backoff


def test_seed_defaults_double_from_one_second_to_sixty() -> None:
    backoff = Backoff(jitter=0)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.next_delay() == 1


@given(
    st.floats(0.001, 10),
    st.floats(1, 100),
    st.floats(1, 4),
    st.floats(0, 1),
    st.integers(0, 2**32),
)
def test_delays_stay_within_bounds(
    initial: float, span: float, multiplier: float, jitter: float, seed: int
) -> None:
    backoff = Backoff(initial, initial * span, multiplier, jitter, rng=random.Random(seed))
    for _ in range(30):
        nominal = backoff.peek()
        delay = backoff.next_delay()
        assert nominal * (1 - jitter) - 1e-9 <= delay <= backoff.maximum
        assert delay >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0}, "initial must be > 0"),
        ({"initial": 5, "maximum": 1}, "below initial"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_invalid_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]
