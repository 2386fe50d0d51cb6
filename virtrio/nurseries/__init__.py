"""Supervision: what owns tasks, restarts them with backoff, and fans out their events.

:func:`open_vm` keeps one VM's channels up; :mod:`virtrio.nurseries.host` one libvirt
connection per host; :mod:`virtrio.nurseries.spice` supervised Spice sessions;
:mod:`virtrio.nurseries.messaging` a supervised message connection and a pool. The primitives
they are made of (:class:`Backoff`, :class:`Fanout`, :class:`Supervisor`) live in
:mod:`virtrio.primitives` and are re-exported here.
"""

from virtrio.primitives import (
    Backoff as Backoff,
    ChannelState as ChannelState,
    Connection as Connection,
    Fanout as Fanout,
    Pressure as Pressure,
    PressureLevel as PressureLevel,
    StateChange as StateChange,
    SubscriberOverflowError as SubscriberOverflowError,
    Subscription as Subscription,
    Supervisor as Supervisor,
)

from ._vm import (
    SupervisedQga as SupervisedQga,
    SupervisedQmp as SupervisedQmp,
    Vm as Vm,
    open_vm as open_vm,
)

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
    "SupervisedQga",
    "SupervisedQmp",
    "Supervisor",
    "Vm",
    "open_vm",
]
