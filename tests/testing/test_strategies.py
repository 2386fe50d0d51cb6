"""The hypothesis strategies: what they generate is what virtrio accepts; the QMP schema
strategy against a real QEMU (docs/examples/qmp_fuzz.py, run here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hypothesis import given, strategies as st
from ruamel.yaml import YAML

from virtrio.channels.qmp import parse_combo, text_to_combos
from virtrio.engine.guest import QemuProcess
from virtrio.engine.scenario import parse_scenario
from virtrio.testing.strategies import (
    MODIFIERS,
    QmpSchema,
    byte_splits,
    check_value,
    key_combos,
    qmp_arguments,
    scenario_steps,
    typeable_text,
)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "qmp_fuzz.py"


@given(typeable_text(min_size=1))
def test_typeable_text_is_typeable(text: str) -> None:
    combos = text_to_combos(text)
    assert len(combos) == len(text)


@given(key_combos())
def test_key_combos_parse(combo: str) -> None:
    keys = parse_combo(combo)
    assert all(k in MODIFIERS for k in keys[:-1])
    assert keys[-1] not in MODIFIERS


@given(st.binary(max_size=200).flatmap(lambda d: st.tuples(st.just(d), byte_splits(d))))
def test_byte_splits_join_back(case: tuple[bytes, list[bytes]]) -> None:
    data, chunks = case
    assert b"".join(chunks) == data
    assert all(chunks)


@given(st.lists(scenario_steps(), min_size=1, max_size=8))
def test_generated_steps_are_valid_scenarios(steps: list[dict[str, Any]]) -> None:
    import io

    text = io.StringIO()
    YAML().dump({"steps": steps}, text)
    scenario = parse_scenario(text.getvalue())
    assert [s.kind for s in scenario.steps] == [next(iter(s)) for s in steps]


SCHEMA = QmpSchema(
    [
        {"name": "cmd", "meta-type": "command", "arg-type": "args", "ret-type": "ret"},
        {"name": "args", "meta-type": "object", "members": [
            {"name": "kind", "type": "mode"},
            {"name": "count", "type": "int", "default": None},
            {"name": "names", "type": "[str]", "default": None},
        ], "tag": "kind", "variants": [{"case": "b", "type": "extra"}]},
        {"name": "extra", "meta-type": "object", "members": [{"name": "flag", "type": "bool"}]},
        {"name": "mode", "meta-type": "enum", "values": ["a", "b"]},
        {"name": "int", "meta-type": "builtin", "json-type": "int"},
        {"name": "str", "meta-type": "builtin", "json-type": "string"},
        {"name": "bool", "meta-type": "builtin", "json-type": "boolean"},
        {"name": "[str]", "meta-type": "array", "element-type": "str"},
        {"name": "ret", "meta-type": "alternate", "members": [{"type": "int"}, {"type": "str"}]},
    ]
)  # fmt: skip


@given(qmp_arguments(SCHEMA, "cmd"))
def test_arguments_fit_their_own_schema(arguments: dict[str, Any]) -> None:
    assert check_value(SCHEMA, "args", arguments) == []
    assert ("flag" in arguments) == (arguments["kind"] == "b")


def test_check_value_names_what_does_not_fit() -> None:
    assert check_value(SCHEMA, "args", {"kind": "c", "count": "1", "x": 1}) == [
        "$.kind: 'c' is not one of ['a', 'b']",
        "$.count: '1' is not int",
        "$: unknown member 'x'",
    ]
    assert check_value(SCHEMA, "args", {"kind": "b"}) == ["$: required member 'flag' missing"]
    assert check_value(SCHEMA, "ret", 3) == []
    assert check_value(SCHEMA, "ret", [3]) != []


async def test_the_qmp_fuzz_example_finds_nothing_wrong(bare_qemu: QemuProcess) -> None:
    spec = importlib.util.spec_from_file_location("qmp_fuzz", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seen = await module.fuzz(bare_qemu.qmp_address, max_examples=40)
    assert sum(c["ok"] for c in seen.values()) > 10  # most calls were answered, and fit
