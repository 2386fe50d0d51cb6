"""Supervision: what owns tasks, restarts them with backoff, and fans out their events."""

from typing import TYPE_CHECKING, Any

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

# The VM nursery sits above the channels, which themselves use the primitives above; importing
# it lazily keeps `virtrio.channels` -> `virtrio.nurseries._fanout` free of an import cycle.
if TYPE_CHECKING:
    from ._vm import (
        SupervisedQga as SupervisedQga,
        SupervisedQmp as SupervisedQmp,
        Vm as Vm,
        open_vm as open_vm,
    )

_LAZY = frozenset({"SupervisedQga", "SupervisedQmp", "Vm", "open_vm"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _vm

        return getattr(_vm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backoff",
    "ChannelState",
    "Connection",
    "Fanout",
    "Pressure",
    "PressureLevel",
    "StateChange",
    "SubscriberOverflowError",
    "Subscription",
    "Supervisor",
    "SupervisedQga",
    "SupervisedQmp",
    "Vm",
    "open_vm",
]
