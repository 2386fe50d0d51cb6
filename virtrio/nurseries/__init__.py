"""Supervision: what owns tasks, restarts them with backoff, and fans out their events.

:func:`open_vm` keeps one VM's channels up; :mod:`virtrio.nurseries.host` one libvirt
connection per host; :mod:`virtrio.nurseries.spice` supervised Spice sessions;
:mod:`virtrio.nurseries.messaging` a supervised message connection and a pool. Every channel
of a VM is built by a channel kind from the :class:`KindRegistry` (:func:`default_registry`:
the built-in kinds and those installed under the entry-point group ``virtrio.channels``); line
channels record their output for :meth:`LineChannel.expect`, :class:`SupervisedMux` opens
yamux streams through reconnects and :class:`XtransportMux` an xtransport connection per
stream. The primitives they are made of (:class:`Backoff`, :class:`Fanout`,
:class:`Supervisor`) live in :mod:`virtrio.primitives` and are re-exported here.
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

from ._kinds import (
    BUILTIN_KINDS as BUILTIN_KINDS,
    MuxOptions as MuxOptions,
    QgaOptions as QgaOptions,
    QmpOptions as QmpOptions,
    SerialConsoleOptions as SerialConsoleOptions,
    SpiceOptions as SpiceOptions,
    VirtioSerialOptions as VirtioSerialOptions,
)
from ._line import LineChannel as LineChannel
from ._mux import SupervisedMux as SupervisedMux
from ._recorder import (
    Mark as Mark,
    MarkExpiredError as MarkExpiredError,
    Match as Match,
    Recorder as Recorder,
)
from ._registry import (
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
    BuiltChannel as BuiltChannel,
    ChannelContext as ChannelContext,
    ChannelKind as ChannelKind,
    DuplicateKindError as DuplicateKindError,
    KindRegistry as KindRegistry,
    UnknownKindError as UnknownKindError,
    default_registry as default_registry,
)
from ._vm import (
    ChannelSpec as ChannelSpec,
    SupervisedQga as SupervisedQga,
    SupervisedQmp as SupervisedQmp,
    Vm as Vm,
    open_vm as open_vm,
)
from ._xmux import XtransportMux as XtransportMux

__all__ = [
    "BUILTIN_KINDS",
    "ENTRY_POINT_GROUP",
    "Backoff",
    "BuiltChannel",
    "ChannelContext",
    "ChannelKind",
    "ChannelSpec",
    "ChannelState",
    "Connection",
    "DuplicateKindError",
    "Fanout",
    "KindRegistry",
    "LineChannel",
    "Mark",
    "MarkExpiredError",
    "Match",
    "MuxOptions",
    "Pressure",
    "PressureLevel",
    "QgaOptions",
    "QmpOptions",
    "Recorder",
    "SerialConsoleOptions",
    "SpiceOptions",
    "StateChange",
    "SubscriberOverflowError",
    "Subscription",
    "SupervisedMux",
    "XtransportMux",
    "SupervisedQga",
    "SupervisedQmp",
    "Supervisor",
    "UnknownKindError",
    "VirtioSerialOptions",
    "Vm",
    "default_registry",
    "open_vm",
]
