"""Board configs for QEMU: the machines of QEMU 7.2 that fit bare-metal work, templates made
from them, and :func:`plan_qemu_node`, which turns a node into QEMU's machine options.

What QEMU cannot model is refused with a :class:`BoardConfigError` naming the field: a memory
region the machine does not have, a clock it does not run at, a peripheral it lacks, an
interconnect between nodes (each QEMU node is its own process). Nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._board import (
    Access,
    BoardConfig,
    BoardConfigError,
    MemoryRegion,
    MemoryType,
    NodeConfig,
    Peripheral,
    Processor,
    Size,
)

__all__ = [
    "QEMU_MACHINES",
    "QemuMachineModel",
    "QemuNodePlan",
    "board_template",
    "plan_qemu_board",
    "plan_qemu_node",
    "template_names",
]

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def _region(kind: MemoryType, address: int, size: int, access: Access, name: str) -> MemoryRegion:
    return MemoryRegion(kind, Size(address), Size(size), access, name)


def _uarts(kind: str, *addresses: int) -> tuple[Peripheral, ...]:
    return tuple(Peripheral("uart", f"{kind}{i}", Size(a)) for i, a in enumerate(addresses))


@attrs.frozen
class QemuMachineModel:
    """What one QEMU machine is: its binary, CPUs, memory map, UARTs and clock.

    ``ram`` is the region ``-m`` sizes (``None``: the machine's RAM is fixed, part of
    ``memory``); ``cpus`` lists the CPU types it takes (the first is the default; ``None``:
    any the binary offers); ``fixed_cpu`` means the board decides the CPU and ``-cpu`` is not
    passed. ``snapshot_problem`` says why snapshots do not work on it, if they do not;
    ``display`` names the screen the board has built in (None: none, no screenshots).
    """

    name: str
    binary: str
    arch: str
    description: str
    cpus: tuple[str, ...] | None
    fixed_cpu: bool
    max_cores: int
    memory: tuple[MemoryRegion, ...]
    uarts: tuple[Peripheral, ...]
    ram: MemoryRegion | None = None
    ram_limit: int = 0
    clock_hz: int | None = None
    snapshot_problem: str | None = None
    display: str | None = None


_RW, _RO = Access.RW, Access.RO
_RAM, _ROM, _FLASH = MemoryType.RAM, MemoryType.ROM, MemoryType.FLASH

#: The QEMU 7.2 machines virtrio has templates for, by machine name.
QEMU_MACHINES: dict[str, QemuMachineModel] = {
    m.name: m
    for m in (
        QemuMachineModel(
            "netduinoplus2",
            "qemu-system-arm",
            "arm",
            "Netduino Plus 2: STM32F405 (STM32F4, Cortex-M4)",
            ("cortex-m4",),
            True,
            1,
            (
                _region(_FLASH, 0x0800_0000, 1 * MIB, _RO, "flash"),
                _region(_RAM, 0x2000_0000, 192 * KIB, _RW, "sram"),
            ),
            _uarts("usart", 0x4001_1000, 0x4000_4400, 0x4000_4800, 0x4000_4C00, 0x4000_5000),
            clock_hz=168_000_000,
        ),
        QemuMachineModel(
            "lm3s6965evb",
            "qemu-system-arm",
            "arm",
            "Stellaris LM3S6965EVB (Cortex-M3)",
            ("cortex-m3",),
            True,
            1,
            (
                _region(_FLASH, 0x0, 256 * KIB, _RO, "flash"),
                _region(_RAM, 0x2000_0000, 64 * KIB, _RW, "sram"),
            ),
            _uarts("uart", 0x4000_C000, 0x4000_D000, 0x4000_E000),
            snapshot_problem=(
                "QEMU 7.2's lm3s6965evb SD-card model aborts on snapshot-load "
                "(sd_ocr_powerup assertion); use mps2-an385 for a Cortex-M3 with snapshots"
            ),
            display="the OLED display (SSD0323, 128x64, on the SSI bus)",
        ),
        QemuMachineModel(
            "mps2-an385",
            "qemu-system-arm",
            "arm",
            "ARM MPS2 with the AN385 FPGA image (Cortex-M3)",
            ("cortex-m3",),
            True,
            1,
            (
                _region(_RAM, 0x0, 4 * MIB, _RW, "ssram1"),
                _region(_RAM, 0x2000_0000, 4 * MIB, _RW, "ssram23"),
                _region(_RAM, 0x2100_0000, 16 * MIB, _RW, "psram"),
            ),
            _uarts("uart", 0x4000_4000, 0x4000_5000, 0x4000_6000, 0x4000_7000, 0x4000_9000),
            clock_hz=25_000_000,
        ),
        QemuMachineModel(
            "pc",
            "qemu-system-x86_64",
            "x86_64",
            "Standard PC (i440FX + PIIX), x86_64",
            None,
            False,
            255,
            (_region(_ROM, 0xFFFC_0000, 256 * KIB, _RO, "bios"),),
            _uarts("com", 0x3F8, 0x2F8, 0x3E8, 0x2E8),
            ram=_region(_RAM, 0x0, 128 * MIB, _RW, "ram"),
            ram_limit=3 * GIB,
        ),
        QemuMachineModel(
            "microvm",
            "qemu-system-x86_64",
            "x86_64",
            "microvm: a minimal x86_64 machine (no PCI, no ACPI by default)",
            None,
            False,
            255,
            (_region(_ROM, 0xFFFF_0000, 64 * KIB, _RO, "bios"),),
            _uarts("com", 0x3F8),
            ram=_region(_RAM, 0x0, 128 * MIB, _RW, "ram"),
            ram_limit=3 * GIB,
        ),
        QemuMachineModel(
            "virt",
            "qemu-system-aarch64",
            "aarch64",
            "QEMU's virt machine, AArch64",
            ("cortex-a57", "cortex-a53", "cortex-a72", "max"),
            False,
            8,
            (
                _region(_FLASH, 0x0, 64 * MIB, _RO, "flash0"),
                _region(_FLASH, 0x0400_0000, 64 * MIB, _RW, "flash1"),
            ),
            _uarts("pl011_", 0x0900_0000),
            ram=_region(_RAM, 0x4000_0000, 128 * MIB, _RW, "ram"),
            ram_limit=255 * GIB,
        ),
    )
}


@attrs.frozen
class QemuNodePlan:
    """A node as QEMU options: the binary, ``-machine``/``-cpu``/``-smp``/``-m`` arguments,
    and which UART (by index) the console is wired to."""

    node: NodeConfig
    model: QemuMachineModel
    binary: str
    args: tuple[str, ...]
    console_index: int = 0


def template_names() -> list[str]:
    """The names of the board templates (the QEMU machine names)."""
    return sorted(QEMU_MACHINES)


def board_template(name: str, *, ram_size: int | None = None) -> BoardConfig:
    """A one-node board for the QEMU machine ``name``, ready to :func:`plan_qemu_node`.

    Raises:
        BoardConfigError: no template has this name.
    """
    model = QEMU_MACHINES.get(name)
    if model is None:
        known = ", ".join(template_names())
        raise BoardConfigError([("$", f"no board template {name!r} (templates: {known})")])
    memory = list(model.memory)
    if model.ram is not None:
        size = Size(ram_size) if ram_size is not None else model.ram.size
        memory.insert(0, attrs.evolve(model.ram, size=size))
    processor = Processor(model.cpus[0] if model.cpus else "qemu64", 1, model.clock_hz)
    node = NodeConfig("node0", "qemu", processor, tuple(memory), model.uarts, machine=name)
    return BoardConfig(f"template-{name}", model.description, (node,))


def plan_qemu_node(node: NodeConfig, *, path: str = "$.nodes[0]") -> QemuNodePlan:
    """QEMU's options for ``node`` (``path`` is the node's place in its board, for errors).

    Raises:
        BoardConfigError: each field QEMU cannot model, named by its path.
    """
    errors: list[tuple[str, str]] = []
    model = QEMU_MACHINES.get(node.machine or "")
    if model is None:
        known = ", ".join(template_names())
        what = f"unknown QEMU machine {node.machine!r}" if node.machine else "required for QEMU"
        raise BoardConfigError([(f"{path}.machine", f"{what} (machines: {known})")])
    args = ["-machine", model.name]
    errors += _plan_processor(node.processor, model, f"{path}.processor", args)
    errors += _plan_memory(node.memory, model, f"{path}.memory", args)
    console, peripheral_errors = _plan_peripherals(node.peripherals, model, f"{path}.peripherals")
    errors += peripheral_errors
    for key in node.options:
        errors.append((f"{path}.options.{key}", "QEMU nodes take no backend options"))
    if errors:
        raise BoardConfigError(errors)
    return QemuNodePlan(node, model, model.binary, tuple(args), console)


def plan_qemu_board(board: BoardConfig) -> dict[str, QemuNodePlan]:
    """A plan for every QEMU node of ``board``, by node id.

    Raises:
        BoardConfigError: a node or the interconnect asks for what QEMU cannot model.
    """
    qemu_ids = {n.id for n in board.nodes if n.backend == "qemu"}
    errors = list(_interconnect_errors(board, qemu_ids))
    plans: dict[str, QemuNodePlan] = {}
    for index, node in enumerate(board.nodes):
        if node.backend != "qemu":
            continue
        try:
            plans[node.id] = plan_qemu_node(node, path=f"$.nodes[{index}]")
        except BoardConfigError as exc:
            errors += exc.errors
    if errors:
        raise BoardConfigError(errors)
    return plans


def _interconnect_errors(board: BoardConfig, qemu_ids: set[str]) -> Iterable[tuple[str, str]]:
    why = "QEMU nodes are separate processes and cannot share memory, interrupts or buses"
    ic = board.interconnect
    for index, shared in enumerate(ic.shared_memory):
        if qemu_ids.intersection(shared.nodes):
            yield (f"$.interconnect.shared_memory[{index}]", why)
    for index, route in enumerate(ic.irq_routes):
        if qemu_ids.intersection((route.source.split(".", 1)[0], route.target)):
            yield (f"$.interconnect.irq_routes[{index}]", why)
    for index, window in enumerate(ic.mmio_map):
        if qemu_ids.intersection((window.node, window.target)):
            yield (f"$.interconnect.mmio_map[{index}]", why)


def _plan_processor(
    processor: Processor, model: QemuMachineModel, at: str, args: list[str]
) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if model.cpus is not None and processor.type not in model.cpus:
        errors.append(
            (
                f"{at}.type",
                f"QEMU's {model.name} takes {', '.join(model.cpus)}, not {processor.type!r}",
            )
        )
    elif not model.fixed_cpu:
        args += ["-cpu", processor.type]
    if processor.cores > model.max_cores:
        errors.append((f"{at}.cores", f"QEMU's {model.name} has at most {model.max_cores} core(s)"))
    elif processor.cores > 1:
        args += ["-smp", str(processor.cores)]
    if processor.frequency is not None and processor.frequency != model.clock_hz:
        fixed = f"runs at {model.clock_hz} Hz" if model.clock_hz else "has no settable clock"
        errors.append(
            (
                f"{at}.frequency",
                f"QEMU's {model.name} {fixed}; cannot model {processor.frequency} Hz",
            )
        )
    return errors


def _plan_memory(
    memory: tuple[MemoryRegion, ...], model: QemuMachineModel, at: str, args: list[str]
) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    fixed = {(r.type, r.address, r.size): r for r in model.memory}
    sized = False
    for index, region in enumerate(memory):
        here = f"{at}[{index}]"
        ram = model.ram
        if ram is not None and region.type is _RAM and region.address == ram.address:
            if sized:
                errors.append((here, "a second RAM region at the same address"))
            elif region.size > model.ram_limit or region.size % MIB:
                errors.append(
                    (
                        f"{here}.size",
                        f"must be a multiple of 1 MiB up to {model.ram_limit // MIB} MiB",
                    )
                )
            elif region.access is not Access.RW:
                errors.append((f"{here}.access", "QEMU's RAM is RW"))
            else:
                args += ["-m", f"{region.size // MIB}M"]
                sized = True
            continue
        match = fixed.get((region.type, region.address, region.size))
        if match is None:
            known = "; ".join(
                f"{r.type.value} {r.address:#x}+{r.size:#x}"
                for r in (*((model.ram,) if model.ram else ()), *model.memory)
            )
            errors.append(
                (
                    here,
                    f"QEMU's {model.name} has no {region.type.value} region at "
                    f"{region.address:#x} of {region.size:#x} bytes (its map: {known})",
                )
            )
        elif region.access is not match.access:
            errors.append((f"{here}.access", f"QEMU models {match.name} as {match.access.value}"))
    return errors


def _plan_peripherals(
    peripherals: tuple[Peripheral, ...], model: QemuMachineModel, at: str
) -> tuple[int, list[tuple[str, str]]]:
    errors: list[tuple[str, str]] = []
    by_name = {p.name: (i, p) for i, p in enumerate(model.uarts)}
    console: int | None = None
    for index, peripheral in enumerate(peripherals):
        here = f"{at}[{index}]"
        known = by_name.get(peripheral.name)
        if known is None or peripheral.type != known[1].type:
            names = ", ".join(f"{p.type} {p.name}" for p in model.uarts)
            errors.append(
                (
                    here,
                    f"QEMU's {model.name} has no {peripheral.type} {peripheral.name!r} "
                    f"that virtrio can wire (it has: {names})",
                )
            )
            continue
        if peripheral.address is not None and peripheral.address != known[1].address:
            errors.append(
                (f"{here}.address", f"{peripheral.name} is at {known[1].address:#x} in QEMU")
            )
        if peripheral.irq is not None:
            errors.append(
                (f"{here}.irq", "QEMU's board wires this interrupt itself; leave irq out")
            )
        for key, value in peripheral.options.items():
            if key != "console" or not isinstance(value, bool):
                errors.append(
                    (f"{here}.options.{key}", "the only UART option is console: true/false")
                )
            elif value:
                if console is not None:
                    errors.append((f"{here}.options.console", "only one UART can be the console"))
                console = known[0]
    return (console or 0), errors
