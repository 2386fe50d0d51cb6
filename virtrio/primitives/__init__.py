"""The bottom layer: what every channel, nursery and the engine build on, importing nothing
above it (enforced by the import-linter contract in pyproject.toml).

* :class:`Backoff` — exponential delays with jitter between reconnect attempts.
* :class:`Fanout` — one publisher, many subscribers with bounded queues.
* :class:`Supervisor` — the one reconnect loop (with :class:`ChannelState` and
  :class:`StateChange`); a :class:`Connection` is what it keeps up.
* :func:`open_service_nursery` — the nursery behind every ``open_*`` context manager.
* :class:`Deadline` — one deadline shared by several waits.
"""

from ._backoff import Backoff as Backoff
from ._deadline import Deadline as Deadline
from ._fanout import (
    Fanout as Fanout,
    Pressure as Pressure,
    PressureLevel as PressureLevel,
    SubscriberOverflowError as SubscriberOverflowError,
    Subscription as Subscription,
)
from ._nursery import open_service_nursery as open_service_nursery
from ._supervisor import (
    ChannelState as ChannelState,
    Connection as Connection,
    StateChange as StateChange,
    Supervisor as Supervisor,
)

__all__ = [
    "Backoff",
    "ChannelState",
    "Connection",
    "Deadline",
    "Fanout",
    "Pressure",
    "PressureLevel",
    "StateChange",
    "SubscriberOverflowError",
    "Subscription",
    "Supervisor",
    "open_service_nursery",
]
