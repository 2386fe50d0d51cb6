"""Emulation backends (seed 002 §2.3-2.4, features S4 and S5): one interface over QEMU, Renode
and SkyEye, and board configs that become each backend's machine.

::

    from virtrio.engine.backends import Breakpoint, board_template, load_backend, open_adapter

    backend = load_backend("qemu", trace=True)
    node = board_template("mps2-an385").nodes[0]
    async with backend.open_instance(node, instance_id="m1", workdir=tmp) as machine:
        program = await machine.upload_program(elf_bytes)
        await machine.set_breakpoint(Breakpoint(symbol="tick"))
        await machine.start_program(program)
        await machine.wait_stop()
        print(await machine.read_registers(["pc", "sp"]))

A backend names what it can do, per board, in :meth:`Backend.capabilities`; a call that needs
something missing raises :class:`UnsupportedCapabilityError` naming the capability. Backends
are found by name through the entry-point group ``virtrio.backends`` (:func:`load_backend`).
See docs/backends.md.
"""

from ._adapter import (
    Backend as Backend,
    BackendAdapter as BackendAdapter,
    BackendInstance as BackendInstance,
    InstanceAdapter as InstanceAdapter,
    open_adapter as open_adapter,
)
from ._board import (
    Access as Access,
    BoardConfig as BoardConfig,
    BoardConfigError as BoardConfigError,
    Interconnect as Interconnect,
    IrqRoute as IrqRoute,
    MemoryRegion as MemoryRegion,
    MemoryType as MemoryType,
    MmioMapping as MmioMapping,
    NodeConfig as NodeConfig,
    Peripheral as Peripheral,
    Processor as Processor,
    SharedMemory as SharedMemory,
    parse_board as parse_board,
    parse_size as parse_size,
)
from ._console import CONSOLE_HISTORY as CONSOLE_HISTORY, ConsoleBuffer as ConsoleBuffer
from ._coverage import (
    DebugInfo as DebugInfo,
    ExecLogParser as ExecLogParser,
    FunctionInfo as FunctionInfo,
    lcov as lcov,
)
from ._limits import (
    ResourceLimitExceededError as ResourceLimitExceededError,
    ResourceLimits as ResourceLimits,
    cgroup_support as cgroup_support,
    remove_stale_cgroups as remove_stale_cgroups,
)
from ._qemu_backend import QemuBackend as QemuBackend
from ._qemu_board import (
    QEMU_MACHINES as QEMU_MACHINES,
    QemuMachineModel as QemuMachineModel,
    QemuNodePlan as QemuNodePlan,
    board_template as board_template,
    plan_qemu_board as plan_qemu_board,
    plan_qemu_node as plan_qemu_node,
    template_names as template_names,
)
from ._qemu_instance import QemuInstance as QemuInstance, QemuSettings as QemuSettings
from ._registry import (
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
    backend_names as backend_names,
    load_backend as load_backend,
)
from ._renode import (
    RenodeBackend as RenodeBackend,
    RenodeInstance as RenodeInstance,
    RobotRemote as RobotRemote,
    renode_platform as renode_platform,
)
from ._schema import BOARD_CONFIG_SCHEMA as BOARD_CONFIG_SCHEMA
from ._skyeye import (
    SkyEyeBackend as SkyEyeBackend,
    SkyEyeInstance as SkyEyeInstance,
    skyeye_config as skyeye_config,
)
from ._types import (
    Artifact as Artifact,
    BackendCommandError as BackendCommandError,
    BackendError as BackendError,
    BackendExitedError as BackendExitedError,
    BackendStartError as BackendStartError,
    BackendStateError as BackendStateError,
    BackendType as BackendType,
    BackendUnavailableError as BackendUnavailableError,
    Breakpoint as Breakpoint,
    BreakpointKind as BreakpointKind,
    Capabilities as Capabilities,
    Capability as Capability,
    ProgramFormat as ProgramFormat,
    ProgramInfo as ProgramInfo,
    StartOptions as StartOptions,
    UnsupportedCapabilityError as UnsupportedCapabilityError,
)

__all__ = [
    "BOARD_CONFIG_SCHEMA",
    "CONSOLE_HISTORY",
    "ENTRY_POINT_GROUP",
    "QEMU_MACHINES",
    "Access",
    "Artifact",
    "Backend",
    "BackendAdapter",
    "BackendCommandError",
    "BackendError",
    "BackendExitedError",
    "BackendInstance",
    "BackendStartError",
    "BackendStateError",
    "BackendType",
    "BackendUnavailableError",
    "BoardConfig",
    "BoardConfigError",
    "Breakpoint",
    "BreakpointKind",
    "Capabilities",
    "Capability",
    "ConsoleBuffer",
    "DebugInfo",
    "ExecLogParser",
    "FunctionInfo",
    "InstanceAdapter",
    "Interconnect",
    "IrqRoute",
    "MemoryRegion",
    "MemoryType",
    "MmioMapping",
    "NodeConfig",
    "Peripheral",
    "Processor",
    "ProgramFormat",
    "ProgramInfo",
    "QemuBackend",
    "QemuInstance",
    "QemuMachineModel",
    "QemuNodePlan",
    "QemuSettings",
    "RenodeBackend",
    "ResourceLimitExceededError",
    "ResourceLimits",
    "RenodeInstance",
    "RobotRemote",
    "SharedMemory",
    "SkyEyeBackend",
    "SkyEyeInstance",
    "StartOptions",
    "UnsupportedCapabilityError",
    "backend_names",
    "board_template",
    "cgroup_support",
    "lcov",
    "load_backend",
    "open_adapter",
    "parse_board",
    "parse_size",
    "remove_stale_cgroups",
    "plan_qemu_board",
    "plan_qemu_node",
    "renode_platform",
    "skyeye_config",
    "template_names",
]
