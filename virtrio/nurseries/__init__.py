"""Supervision: what owns tasks, restarts them with backoff, and fans out their events."""

from ._backoff import Backoff as Backoff
from ._fanout import (
    Fanout as Fanout,
    Pressure as Pressure,
    PressureLevel as PressureLevel,
    SubscriberOverflowError as SubscriberOverflowError,
    Subscription as Subscription,
)
from ._supervisor import (
    ChannelState as ChannelState,
    Connection as Connection,
    StateChange as StateChange,
    Supervisor as Supervisor,
)
