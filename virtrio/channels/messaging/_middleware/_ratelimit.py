"""Rate limits on what this end sends: :class:`RateLimit` and its sans-I/O core
:class:`TokenBucket`."""

from __future__ import annotations

import math
from typing import Any

import attrs
import trio

from virtrio.errors import ConfigError

from .._transports import MessageChannel
from ._base import LayerChannel, Middleware

__all__ = ["RateLimit", "TokenBucket"]


# tokens lost to float rounding while refilling must not cost another sleep
_TOKEN_EPSILON = 1e-6


class TokenBucket:
    """A token bucket (the sans-I/O core of :class:`RateLimit`): ``rate`` tokens a second up
    to ``burst``; it starts full at the first time it is given.

    An amount over ``burst`` is not refused: it may go once the bucket is full and leaves it in
    debt (negative), so the long-run rate holds.

    >>> bucket = TokenBucket(rate=100, burst=100)
    >>> bucket.delay(100, now=0.0)
    0.0
    >>> bucket.take(100, now=0.0)
    >>> bucket.delay(50, now=0.0)
    0.5
    """

    def __init__(self, rate: float, burst: float) -> None:
        if not 0 < rate < math.inf:
            raise ConfigError(f"rate must be a positive finite number, got {rate!r}")
        if not 0 < burst < math.inf:
            raise ConfigError(f"burst must be a positive finite number, got {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def tokens(self, now: float) -> float:
        """The tokens in the bucket at ``now`` (negative while in debt)."""
        self._refill(now)
        return self._tokens

    def delay(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` may be taken (``0.0``: right away)."""
        self._refill(now)
        shortfall = min(amount, self.burst) - self._tokens
        return shortfall / self.rate if shortfall > _TOKEN_EPSILON else 0.0

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` tokens at ``now``, going into debt if there are not enough."""
        self._refill(now)
        self._tokens -= amount

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now


def _rate(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (
        isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
    ):
        raise ConfigError(f"{attribute.name} must be a positive finite number, got {value!r}")


def _burst(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{attribute.name} must be a positive number of bytes, got {value!r}")


@attrs.frozen
class RateLimit(Middleware):
    """Limits what this end sends: ``bytes_per_second`` (and optionally
    ``messages_per_second``), with one token bucket per limit and per connection.

    ``burst`` is how many bytes may go at once after an idle spell: by default one second's
    worth, at least 64 KiB; the message bucket holds one second's worth, at least one. A
    message larger than ``burst`` waits until the bucket is full, then goes. Bytes are counted
    as the message is at this layer: put it after :class:`Compression` to limit the compressed
    size. Senders are served in the order they call ``send``; a send cancelled while waiting
    takes nothing. Receiving is not limited.
    """

    bytes_per_second: float = attrs.field(validator=_rate)
    burst: int | None = attrs.field(default=None, kw_only=True, validator=_burst)
    messages_per_second: float | None = attrs.field(default=None, kw_only=True, validator=_rate)

    @property
    def byte_burst(self) -> int:
        """The byte bucket's size: ``burst``, or its default."""
        if self.burst is not None:
            return self.burst
        return max(64 * 1024, math.ceil(self.bytes_per_second))

    async def wrap(
        self, channel: MessageChannel, *, client: bool, max_message_size: int
    ) -> MessageChannel:
        """``channel`` with its sends paced."""
        buckets = [(TokenBucket(self.bytes_per_second, self.byte_burst), False)]
        if self.messages_per_second is not None:
            message_burst = max(1, math.ceil(self.messages_per_second))
            buckets.append((TokenBucket(self.messages_per_second, message_burst), True))
        return _RateLimitedChannel(channel, buckets)


class _RateLimitedChannel(LayerChannel):
    def __init__(self, inner: MessageChannel, buckets: list[tuple[TokenBucket, bool]]) -> None:
        super().__init__(inner)
        self._buckets = buckets  # (bucket, counts messages rather than bytes)
        self._send_lock = trio.StrictFIFOLock()

    async def send(self, value: bytes) -> None:
        """Send one message once the limits allow it (or raise when the caller's deadline
        passes first)."""
        async with self._send_lock:
            while True:
                now = trio.current_time()
                wait = max(
                    bucket.delay(1 if per_message else len(value), now)
                    for bucket, per_message in self._buckets
                )
                if wait <= 0:
                    break
                await trio.sleep(wait)
            for bucket, per_message in self._buckets:
                bucket.take(1 if per_message else len(value), now)
            await self.inner.send(value)
