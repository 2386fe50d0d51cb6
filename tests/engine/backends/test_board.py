"""Board configs: parsing with errors that name the field, the JSON Schema (checked with the
jsonschema package), templates, and QEMU generation that refuses what QEMU cannot model."""

from __future__ import annotations

import copy
import functools
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings, strategies as st

from virtrio.engine.backends import (
    BOARD_CONFIG_SCHEMA,
    BoardConfigError,
    MemoryType,
    board_template,
    parse_board,
    parse_size,
    plan_qemu_board,
    plan_qemu_node,
    template_names,
)

#: The seed's example, filled in.
SEED_EXAMPLE: dict[str, Any] = {
    "system_id": "stm32f4-demo",
    "name": "STM32F4 demo",
    "nodes": [
        {
            "id": "mcu",
            "backend": "qemu",
            "machine": "netduinoplus2",
            "processor": {"type": "cortex-m4", "cores": 1, "frequency": 168000000},
            "memory": [
                {"type": "Flash", "address": "0x08000000", "size": "1M", "access": "RO"},
                {"type": "RAM", "address": "0x20000000", "size": "192K", "access": "RW"},
            ],
            "peripherals": [
                {"type": "uart", "name": "usart0", "address": "0x40011000"},
                {"type": "uart", "name": "usart1", "options": {"console": True}},
            ],
        }
    ],
    "interconnect": {"shared_memory": [], "irq_routes": [], "mmio_map": []},
}


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(BOARD_CONFIG_SCHEMA)
    return jsonschema.Draft202012Validator(BOARD_CONFIG_SCHEMA)


def test_seed_example_parses_and_plans() -> None:
    _validator().validate(SEED_EXAMPLE)
    board = parse_board(SEED_EXAMPLE)
    node = board.node("mcu")
    assert node.memory[1].size == 192 * 1024
    assert node.memory[0].type is MemoryType.FLASH
    plan = plan_qemu_node(node)
    assert plan.binary == "qemu-system-arm"
    assert plan.args == ("-machine", "netduinoplus2")
    assert plan.console_index == 1
    assert parse_board(board.to_json()) == board


@pytest.mark.parametrize("name", template_names())
def test_templates_round_trip_and_match_the_schema(name: str) -> None:
    board = board_template(name)
    data = board.to_json()
    _validator().validate(data)
    assert parse_board(data) == board
    assert plan_qemu_board(board)["node0"].model.name == name


def _with(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(SEED_EXAMPLE)
    change(data)
    return data


def _node(data: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = data["nodes"][0]
    return node


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda d: _node(d)["processor"].update(cores="2"),
            "$.nodes[0].processor.cores",
            "integer",
        ),
        (lambda d: _node(d)["processor"].update(cores=0), "$.nodes[0].processor.cores", ">= 1"),
        (
            lambda d: _node(d)["memory"][0].update(type="DRAM"),
            "$.nodes[0].memory[0].type",
            "'Flash'",
        ),
        (lambda d: _node(d)["memory"][1].update(size="lots"), "$.nodes[0].memory[1].size", "64K"),
        (lambda d: _node(d).update(colour="red"), "$.nodes[0]", "unknown field(s): colour"),
        (lambda d: d.pop("name"), "$.name", "required"),
        (
            lambda d: _node(d)["memory"][1].update(address=0x08000010),
            "$.nodes[0].memory",
            "overlaps",
        ),
        (lambda d: d["nodes"].append(copy.deepcopy(_node(d))), "$.nodes[1].id", "duplicate"),
        (
            lambda d: d["interconnect"]["irq_routes"].append(
                {"source": "x.uart", "target": "mcu", "irq": 1}
            ),
            "$.interconnect.irq_routes[0]",
            "no node 'x'",
        ),
    ],
)
def test_invalid_configs_name_the_field(change: Any, path: str, message: str) -> None:
    data = _with(change)
    with pytest.raises(BoardConfigError) as info:
        parse_board(data)
    assert any(p.startswith(path) and message in m for p, m in info.value.errors), info.value.errors
    assert str(info.value).startswith("board config: $")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: _node(d)["processor"].update(cores="2"),
        lambda d: _node(d)["memory"][0].update(type="DRAM"),
        lambda d: _node(d).update(colour="red"),
        lambda d: d.pop("name"),
        lambda d: _node(d)["memory"][1].update(size="lots"),
    ],
)
def test_schema_rejects_what_the_parser_rejects(change: Any) -> None:
    data = _with(change)
    assert not _validator().is_valid(data)
    with pytest.raises(BoardConfigError):
        parse_board(data)


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda d: _node(d)["processor"].update(frequency=100_000_000),
            ".processor.frequency",
            "168000000 Hz",
        ),
        (lambda d: _node(d)["processor"].update(type="cortex-m3"), ".processor.type", "cortex-m4"),
        (lambda d: _node(d)["processor"].update(cores=2), ".processor.cores", "at most 1"),
        (
            lambda d: _node(d)["memory"].append(
                {"type": "RAM", "address": "0x30000000", "size": "4K"}
            ),
            ".memory[2]",
            "no RAM region at 0x30000000",
        ),
        (lambda d: _node(d)["memory"][0].update(access="RW"), ".memory[0].access", "RO"),
        (
            lambda d: _node(d)["peripherals"].append({"type": "can", "name": "can0"}),
            ".peripherals[2]",
            "no can",
        ),
        (
            lambda d: _node(d)["peripherals"][0].update(address=4),
            ".peripherals[0].address",
            "0x40011000",
        ),
        (
            lambda d: _node(d)["peripherals"][0].update(irq=37),
            ".peripherals[0].irq",
            "leave irq out",
        ),
        (lambda d: _node(d).update(options={"icount": 3}), ".options.icount", "no backend options"),
        (lambda d: _node(d).update(machine="pdp11"), ".machine", "unknown QEMU machine 'pdp11'"),
    ],
)
def test_qemu_refuses_what_it_cannot_model(change: Any, path: str, message: str) -> None:
    board = parse_board(_with(change))
    with pytest.raises(BoardConfigError) as info:
        plan_qemu_board(board)
    assert any(p == f"$.nodes[0]{path}" and message in m for p, m in info.value.errors), (
        info.value.errors
    )


def test_qemu_refuses_an_interconnect() -> None:
    data = copy.deepcopy(SEED_EXAMPLE)
    data["interconnect"]["shared_memory"] = [
        {"name": "mailbox", "address": "0x20000000", "size": "4K", "nodes": ["mcu"]}
    ]
    with pytest.raises(BoardConfigError, match=r"shared_memory\[0\].*separate processes"):
        plan_qemu_board(parse_board(data))


def test_flexible_ram_becomes_dash_m() -> None:
    plan = plan_qemu_node(board_template("virt", ram_size=256 << 20).nodes[0])
    assert plan.args == ("-machine", "virt", "-cpu", "cortex-a57", "-m", "256M")
    data = board_template("pc").to_json()
    data["nodes"][0]["memory"][0]["size"] = "1000K"
    with pytest.raises(BoardConfigError, match=r"memory\[0\]\.size.*1 MiB"):
        plan_qemu_node(parse_board(data).nodes[0])
    data["nodes"][0]["processor"]["cores"] = 4
    data["nodes"][0]["memory"][0]["size"] = "64M"
    assert "-smp" in plan_qemu_node(parse_board(data).nodes[0]).args


def test_unknown_template() -> None:
    with pytest.raises(BoardConfigError, match="templates: lm3s6965evb"):
        board_template("nope")


@given(st.integers(min_value=0, max_value=1 << 64))
def test_size_text_round_trips(value: int) -> None:
    assert parse_size(value) == value
    assert parse_size(hex(value)) == value
    assert parse_size(str(value)) == value


@given(st.integers(min_value=0, max_value=1 << 20), st.sampled_from(["K", "M", "G", "KiB", "MB"]))
def test_size_units(value: int, unit: str) -> None:
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[unit[0]]
    assert parse_size(f"{value}{unit}") == value * scale
    assert _validator().is_valid(
        _with(lambda d: _node(d)["memory"][1].update(size=f"{value}{unit}"))
    )


@given(st.text(max_size=12))
def test_size_garbage_is_a_clear_error(text: str) -> None:
    stripped = text.strip()
    if not stripped or not stripped[0].isdigit():  # a size starts with a digit
        with pytest.raises(ValueError, match=r"expected an integer|must be >= 0"):
            parse_size(text)
    else:
        try:
            assert parse_size(text) >= 0
        except ValueError as exc:
            assert "expected an integer" in str(exc)  # noqa: PT017


_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8)


@st.composite
def _boards(draw: st.DrawFn) -> dict[str, Any]:
    nodes = []
    for node_id in draw(st.lists(_NAMES, min_size=1, max_size=3, unique=True)):
        address, memory = 0, []
        for _ in range(draw(st.integers(0, 4))):
            address += draw(st.integers(0, 1 << 20))
            size = draw(st.integers(1, 1 << 24))
            memory.append(
                {
                    "type": draw(st.sampled_from(["RAM", "ROM", "Flash"])),
                    "address": draw(st.sampled_from([address, hex(address)])),
                    "size": size,
                    "access": draw(st.sampled_from(["RW", "RO", "WO"])),
                    "name": draw(_NAMES),
                }
            )
            address += size
        nodes.append(
            {
                "id": node_id,
                "backend": draw(st.sampled_from(["qemu", "renode", "skyeye"])),
                "processor": {
                    "type": draw(_NAMES),
                    "cores": draw(st.integers(1, 64)),
                    "frequency": draw(st.none() | st.integers(1, 10**10)),
                },
                "memory": memory,
                "peripherals": [
                    {
                        "type": "uart",
                        "name": draw(_NAMES),
                        "irq": draw(st.none() | st.integers(0, 200)),
                    }
                ],
                "options": draw(
                    st.dictionaries(_NAMES, st.booleans() | st.integers() | _NAMES, max_size=2)
                ),
            }
        )
    return {"system_id": draw(_NAMES), "name": draw(st.text(max_size=10)), "nodes": nodes}


@settings(max_examples=50)
@given(_boards())
def test_valid_boards_round_trip_and_match_the_schema(data: dict[str, Any]) -> None:
    assert _validator().is_valid(data)
    board = parse_board(data)
    assert parse_board(board.to_json()) == board
    assert _validator().is_valid(board.to_json())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(_boards(), st.lists(st.tuples(st.integers(0, 30), _JSON), min_size=1, max_size=3))
def test_garbage_anywhere_is_a_board_config_error(data: dict[str, Any], edits: list[Any]) -> None:
    paths: list[tuple[Any, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                paths.append((value, key))
                walk(item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                paths.append((value, index))
                walk(item)

    walk(data)
    for position, garbage in edits:
        container, key = paths[position % len(paths)]
        container[key] = garbage
    try:
        board = parse_board(data)
    except BoardConfigError as exc:
        errors = exc.errors
    else:
        assert parse_board(board.to_json()) == board
        return
    assert errors
    assert all(path.startswith("$") for path, _ in errors)
