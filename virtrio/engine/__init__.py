"""The fleet and its faces: the engine, fleet configuration, the demo guest and the CLI.

::

    async with open_engine(default_fleet(vms=2)) as engine:
        await engine.wait_connected(timeout=60)
        vm = engine.vm("demo1")
        mark = vm.line("console").mark()
        await vm.line("console").send("echo hi\\n")
        await vm.line("console").expect("hi", after=mark, timeout=10)
"""

from ._engine import (
    Engine as Engine,
    EngineStatistics as EngineStatistics,
    open_engine as open_engine,
)
from ._events import EngineEvent as EngineEvent, EventKind as EventKind
from .config import (
    Fleet as Fleet,
    FleetError as FleetError,
    default_fleet as default_fleet,
    load_fleet as load_fleet,
)

__all__ = [
    "Engine",
    "EngineEvent",
    "EngineStatistics",
    "EventKind",
    "Fleet",
    "FleetError",
    "default_fleet",
    "load_fleet",
    "open_engine",
]
