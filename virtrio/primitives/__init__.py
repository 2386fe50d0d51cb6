"""The bottom layer: what every channel, nursery and the engine build on, importing nothing
above it (enforced by the import-linter contract in pyproject.toml).

* :class:`Backoff` — exponential delays with jitter between reconnect attempts.
* :class:`Fanout` — one publisher, many subscribers with bounded queues.
* :class:`Supervisor` — the one reconnect loop (with :class:`ChannelState` and
  :class:`StateChange`); a :class:`Connection` is what it keeps up.
* :func:`open_service_nursery` — the nursery behind every ``open_*`` context manager.
* :class:`Deadline` — one deadline shared by several waits.
* :class:`SupervisedHandle` — the base of every handle that stays valid across reconnects.
* :class:`Executor` — the protocol of everything that runs ``execute(command, arguments)``.
* :func:`is_transient` — the rule that tells a failure worth retrying from a permanent one;
  :func:`fresh_error` — a copy of an error for one more receiver; :func:`collapse_groups` —
  the one real error out of a nursery's ExceptionGroup.
* :func:`run_in_worker` — a blocking call in a worker thread, for the cost of the hand-off.
* :class:`DirectReads` — a Trio socket read through its descriptor, waiting first after a short
  read and yielding every :data:`READS_WITHOUT_YIELD` th read; :func:`write_all` — many
  buffers to one ``writev``, waiting only while the socket is full.
* :class:`Mutex` — a FIFO lock whose uncontended take and release are a few attribute reads.
* :class:`SpinPolicy` — a bounded, adaptive busy-poll of a descriptor before parking on it
  (the GDB client, the PTY client and daemon).
"""

from ._backoff import Backoff as Backoff
from ._deadline import Deadline as Deadline
from ._direct_io import (
    IOV_MAX as IOV_MAX,
    READS_WITHOUT_YIELD as READS_WITHOUT_YIELD,
    DirectReads as DirectReads,
    write_all as write_all,
)
from ._errors import (
    collapse_groups as collapse_groups,
    fresh_error as fresh_error,
    is_transient as is_transient,
)
from ._executor import Executor as Executor
from ._fanout import (
    Fanout as Fanout,
    Pressure as Pressure,
    PressureLevel as PressureLevel,
    SubscriberOverflowError as SubscriberOverflowError,
    Subscription as Subscription,
)
from ._handle import SupervisedHandle as SupervisedHandle
from ._mutex import Mutex as Mutex
from ._nursery import open_service_nursery as open_service_nursery
from ._spin import SpinPolicy as SpinPolicy
from ._supervisor import (
    ChannelState as ChannelState,
    Connection as Connection,
    StateChange as StateChange,
    Supervisor as Supervisor,
)
from ._worker import run_in_worker as run_in_worker

__all__ = [
    "Backoff",
    "ChannelState",
    "Connection",
    "Deadline",
    "DirectReads",
    "Executor",
    "IOV_MAX",
    "Fanout",
    "Mutex",
    "Pressure",
    "PressureLevel",
    "READS_WITHOUT_YIELD",
    "SpinPolicy",
    "StateChange",
    "SubscriberOverflowError",
    "Subscription",
    "SupervisedHandle",
    "Supervisor",
    "collapse_groups",
    "fresh_error",
    "is_transient",
    "open_service_nursery",
    "run_in_worker",
    "write_all",
]
