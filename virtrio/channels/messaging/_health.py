"""Health checks of message connections (feature V6), shared by the pool and the supervised
connection: how often a connection is probed, how long the probe may take, and the probe."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import trio

from virtrio.errors import ConfigError, ConnectionLostError

from ._errors import MessagingError

if TYPE_CHECKING:
    from ._endpoints import MessageConnection

__all__ = ["HealthCheck", "HealthCheckError", "Probe"]


class Probe(Protocol):
    """A health probe: ``async def probe(connection)`` that raises (or takes longer than the
    check's timeout) when the connection is unhealthy."""

    def __call__(self, connection: MessageConnection, /) -> Awaitable[object]: ...


class HealthCheckError(MessagingError, ConnectionLostError):
    """A connection failed its health check (and was closed); carries the probe's error."""


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ConfigError(f"HealthCheck.{attribute.name} must be > 0 seconds, got {value!r}")


@attrs.frozen
class HealthCheck:
    """Probe a connection every ``interval`` seconds; one that fails, or answers later than
    ``timeout``, is closed (a supervised connection then reconnects; a pool drops it).

    The default probe is the transport's own ping (yamux: answered by the peer's multiplexer,
    whatever its application is doing). xtransport has no ping, so with it the default checks
    only that the connection is still up; give ``probe`` for more. A probe of a pooled
    connection may send a message and wait for the reply; a supervised connection's messages
    are all delivered to its receivers, so its probe must not receive.

    >>> HealthCheck(interval=5, timeout=2).interval
    5
    """

    interval: float = attrs.field(default=10.0, validator=_positive)
    timeout: float = attrs.field(default=5.0, validator=_positive)
    probe: Probe | None = None

    async def check(self, connection: MessageConnection) -> None:
        """Probe ``connection`` once.

        Raises:
            HealthCheckError: it is down, the probe failed, or it took over ``timeout``.
        """
        if not connection.is_connected:
            raise HealthCheckError(f"connection to {connection.peer} is down")
        try:
            with trio.fail_after(self.timeout):
                if self.probe is not None:
                    await self.probe(connection)
                elif connection.can_ping:
                    await connection.ping(timeout=self.timeout)
                else:
                    await trio.lowlevel.checkpoint()
        except trio.TooSlowError:
            raise HealthCheckError(
                f"health check of {connection.peer}: no answer in {self.timeout:g} s"
            ) from None
        except Exception as exc:  # whatever a probe raises, the connection is not healthy
            raise HealthCheckError(f"health check of {connection.peer} failed: {exc!r}") from exc

    async def watch(self, connection: MessageConnection) -> HealthCheckError:
        """Probe every ``interval`` seconds until a check fails; returns that failure."""
        while True:
            await trio.sleep(self.interval)
            try:
                await self.check(connection)
            except HealthCheckError as exc:
                return exc
