"""Exponential backoff with jitter, the delay policy of every reconnect loop in virtrio."""

from __future__ import annotations

import random

import attrs

from virtrio.errors import ConfigError

__all__ = ["Backoff"]


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"Backoff.{attr.name} must be > 0, got {value!r}")


@attrs.define
class Backoff:
    """Delays that grow ``initial * multiplier**n`` up to ``maximum``, each spread by ``jitter``.

    The seed's defaults: 1 s, doubling, capped at 60 s. ``jitter`` is a fraction: 0.1 draws each
    delay uniformly from ±10 % around its nominal value (never above ``maximum``), so many clients
    that lost the same peer do not reconnect in lockstep. :meth:`reset` after a success.

    >>> b = Backoff(initial=1, maximum=8, jitter=0)
    >>> [b.next_delay() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    initial: float = attrs.field(default=1.0, validator=_positive, converter=float)
    maximum: float = attrs.field(default=60.0, validator=_positive, converter=float)
    multiplier: float = attrs.field(default=2.0, converter=float)
    jitter: float = attrs.field(default=0.1, converter=float)
    #: Consecutive failures since the last :meth:`reset`.
    attempts: int = attrs.field(default=0, init=False)
    _rng: random.Random = attrs.field(factory=random.Random, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ConfigError(f"Backoff.maximum ({self.maximum}) is below initial ({self.initial})")
        if self.multiplier < 1:
            raise ConfigError(f"Backoff.multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"Backoff.jitter must be in [0, 1], got {self.jitter}")

    def peek(self) -> float:
        """The nominal (jitter-free) delay the next :meth:`next_delay` is centred on."""
        return min(self.maximum, self.initial * self.multiplier**self.attempts)

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next attempt."""
        nominal = self.peek()
        self.attempts += 1
        if not self.jitter:
            return nominal
        spread = nominal * self.jitter
        return min(self.maximum, self._rng.uniform(nominal - spread, nominal + spread))

    def reset(self) -> None:
        """Forget past failures: the next delay is ``initial`` again."""
        self.attempts = 0
