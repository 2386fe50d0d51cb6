"""Board configs (seed 002 §2.4, feature S5): a system of nodes, each with a backend, a
processor, a memory map and peripherals, and the interconnect between nodes.

:func:`parse_board` turns JSON-shaped data into a :class:`BoardConfig` and checks it; every
error names the field path (``$.nodes[0].memory[1].size``). Addresses and sizes may be integers
or strings (``"0x20000000"``, ``"64K"``, ``"1M"``). Unknown fields are errors, never dropped.

::

    board = parse_board(json.loads(text))
    board.to_json()                      # back to JSON-shaped data
"""

from __future__ import annotations

import enum
import itertools
import re
from collections.abc import Mapping
from typing import Any, NewType

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from virtrio.errors import ConfigError

__all__ = [
    "Access",
    "BoardConfig",
    "BoardConfigError",
    "Interconnect",
    "IrqRoute",
    "MemoryRegion",
    "MemoryType",
    "MmioMapping",
    "NodeConfig",
    "Peripheral",
    "Processor",
    "SharedMemory",
    "parse_board",
    "parse_size",
]

#: An address or size: an int, or text like ``0x2000_0000``, ``64K``, ``1M``, ``2G``.
Size = NewType("Size", int)


class BoardConfigError(ConfigError):
    """A board config is invalid. ``errors`` lists every problem as ``(path, message)``; the
    message of the exception names the first (``$.nodes[0].processor.cores: ...``)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        first_path, first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"board config: {first_path}: {first}{more}")
        self.errors = errors
        self.path = first_path


class MemoryType(enum.StrEnum):
    """What a memory region is."""

    RAM = "RAM"
    ROM = "ROM"
    FLASH = "Flash"


class Access(enum.StrEnum):
    """How the guest may access a region."""

    RW = "RW"
    RO = "RO"
    WO = "WO"


@attrs.frozen
class Processor:
    """The CPU: a type the backend knows (``cortex-m4``, ``qemu64``), cores, clock in Hz."""

    type: str
    cores: int = 1
    frequency: int | None = None


@attrs.frozen
class MemoryRegion:
    """One region of the memory map."""

    type: MemoryType
    address: Size
    size: Size
    access: Access = Access.RW
    name: str = ""

    @property
    def end(self) -> int:
        """The first address past the region."""
        return self.address + self.size


@attrs.frozen
class Peripheral:
    """A device on the node's bus (``{"type": "uart", "name": "uart0", "address": ...}``)."""

    type: str
    name: str
    address: Size | None = None
    irq: int | None = None
    options: dict[str, str | int | bool] = attrs.field(factory=dict)


@attrs.frozen
class NodeConfig:
    """One emulated machine of a system. ``machine`` names the backend's board model (a QEMU
    machine, a Renode platform); ``options`` are backend-specific settings."""

    id: str
    backend: str
    processor: Processor
    memory: tuple[MemoryRegion, ...] = ()
    peripherals: tuple[Peripheral, ...] = ()
    machine: str | None = None
    options: dict[str, str | int | bool] = attrs.field(factory=dict)


@attrs.frozen
class SharedMemory:
    """A region that several nodes see."""

    name: str
    address: Size
    size: Size
    nodes: tuple[str, ...]


@attrs.frozen
class IrqRoute:
    """An interrupt from one node's peripheral into another node."""

    source: str  #: ``node.peripheral``
    target: str  #: a node id
    irq: int


@attrs.frozen
class MmioMapping:
    """A window of one node's bus mapped onto another node."""

    node: str
    address: Size
    size: Size
    target: str


@attrs.frozen
class Interconnect:
    """How the nodes of a system are connected."""

    shared_memory: tuple[SharedMemory, ...] = ()
    irq_routes: tuple[IrqRoute, ...] = ()
    mmio_map: tuple[MmioMapping, ...] = ()

    @property
    def is_empty(self) -> bool:
        """Whether the nodes are independent."""
        return not (self.shared_memory or self.irq_routes or self.mmio_map)


@attrs.frozen
class BoardConfig:
    """A whole system: its id, name, nodes and interconnect."""

    system_id: str
    name: str
    nodes: tuple[NodeConfig, ...]
    interconnect: Interconnect = Interconnect()

    def node(self, node_id: str) -> NodeConfig:
        """The node with this id.

        Raises:
            ConfigError: no such node.
        """
        for node in self.nodes:
            if node.id == node_id:
                return node
        known = ", ".join(n.id for n in self.nodes)
        raise ConfigError(f"board {self.system_id!r} has no node {node_id!r} (nodes: {known})")

    def to_json(self) -> dict[str, Any]:
        """JSON-shaped data that :func:`parse_board` reads back to an equal config."""
        data: dict[str, Any] = _converter.unstructure(self)
        return data


_SIZE = re.compile(r"(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)\s*([KMG](?:i?B)?)?", re.ASCII)
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class _FieldValueError(ValueError):
    """A value error whose message is shown as it is (not cattrs' generic one)."""


def parse_size(value: object) -> int:
    """An address or size from an int or text (``0x8000000``, ``192K``, ``16MiB``).

    Raises:
        ValueError: not an integer or such text, or negative.
    """
    if isinstance(value, bool):
        raise _FieldValueError(f"expected an integer or text like '0x1000' or '64K', got {value}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise _FieldValueError(f"expected an integer or text like '0x1000' or '64K': {value!r}")
        number = int(match.group(1).replace("_", ""), 0)
        if match.group(2):
            number *= _UNITS[match.group(2)[0]]
    else:
        raise _FieldValueError(f"expected an integer or text, got {type(value).__name__}")
    if number < 0:
        raise _FieldValueError(f"must be >= 0, got {number}")
    return number


def _enum_hook(kind: type[enum.StrEnum]) -> Any:
    def structure(value: object, _: object) -> enum.StrEnum:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return kind(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in kind)
            raise _FieldValueError(f"{value!r} is not one of {allowed}") from None

    return structure


def _strict(kind: type) -> Any:
    def structure(value: object, _: object) -> object:
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise _FieldValueError(f"expected an integer, got {value!r}")
        if kind is str and not isinstance(value, str):
            raise _FieldValueError(f"expected a string, got {value!r}")
        return value

    return structure


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(Size, lambda value, _: Size(parse_size(value)))
_converter.register_structure_hook(int, _strict(int))
_converter.register_structure_hook(str, _strict(str))


def _option(value: object, _: object) -> str | int | bool:
    if not isinstance(value, str | int | bool):
        raise _FieldValueError(f"expected a string, integer or boolean, got {value!r}")
    return value


_converter.register_structure_hook(str | int | bool, _option)
for _kind in (MemoryType, Access):
    _converter.register_structure_hook(_kind, _enum_hook(_kind))
    _converter.register_unstructure_hook(_kind, lambda member: member.value)


def _format(exc: BaseException, kind: type | None) -> str:
    if isinstance(exc, _FieldValueError):
        return str(exc)
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown field(s): {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "required field missing"
    return cattrs.v.format_exception(exc, kind)


def parse_board(data: Mapping[str, Any]) -> BoardConfig:
    """A :class:`BoardConfig` from JSON-shaped data, structurally and semantically checked.

    Raises:
        BoardConfigError: every problem found, each with its field path.
    """
    try:
        board = _converter.structure(data, BoardConfig)
    except (ClassValidationError, IterableValidationError) as exc:
        messages = cattrs.transform_error(exc, path="$", format_exception=_format)
        raise BoardConfigError([_split(m) for m in messages]) from None
    except _FieldValueError as exc:
        raise BoardConfigError([("$", str(exc))]) from None
    errors = check_board(board)
    if errors:
        raise BoardConfigError(errors)
    return board


def _split(message: str) -> tuple[str, str]:
    text, _, path = message.rpartition(" @ ")
    return (path, text) if text else ("$", message)


def check_board(board: BoardConfig) -> list[tuple[str, str]]:
    """The semantic problems of a structurally valid config, as ``(path, message)``."""
    errors: list[tuple[str, str]] = []
    if not board.nodes:
        errors.append(("$.nodes", "a board needs at least one node"))
    seen: set[str] = set()
    for index, node in enumerate(board.nodes):
        at = f"$.nodes[{index}]"
        if not node.id:
            errors.append((f"{at}.id", "must not be empty"))
        if node.id in seen:
            errors.append((f"{at}.id", f"duplicate node id {node.id!r}"))
        seen.add(node.id)
        if node.processor.cores < 1:
            errors.append((f"{at}.processor.cores", f"must be >= 1, got {node.processor.cores}"))
        freq = node.processor.frequency
        if freq is not None and freq <= 0:
            errors.append((f"{at}.processor.frequency", f"must be > 0 Hz, got {freq}"))
        errors.extend(_check_memory(node, at))
    ic = board.interconnect
    references = [
        (f"shared_memory[{i}]", shared.nodes) for i, shared in enumerate(ic.shared_memory)
    ] + [(f"mmio_map[{i}]", (w.node, w.target)) for i, w in enumerate(ic.mmio_map)]
    for where, names in references:
        for name in names:
            if name not in seen:
                errors.append((f"$.interconnect.{where}", f"no node {name!r}"))
    for index, route in enumerate(ic.irq_routes):
        source_node = route.source.split(".", 1)[0]
        for name in (source_node, route.target):
            if name not in seen:
                errors.append((f"$.interconnect.irq_routes[{index}]", f"no node {name!r}"))
    return errors


def _check_memory(node: NodeConfig, at: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    regions = sorted(enumerate(node.memory), key=lambda item: item[1].address)
    for index, region in regions:
        if region.size == 0:
            errors.append((f"{at}.memory[{index}].size", "must be > 0"))
    for (i, first), (j, second) in itertools.pairwise(regions):
        if second.address < first.end:
            errors.append(
                (
                    f"{at}.memory[{j}].address",
                    f"{second.address:#x} overlaps memory[{i}] "
                    f"({first.address:#x}..{first.end:#x})",
                )
            )
    return errors
