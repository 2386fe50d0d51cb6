"""The hypothesis strategies (re-exported by :mod:`virtrio.testing.strategies`)."""

from __future__ import annotations

import itertools
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from virtrio.channels.qmp import QCODES
from virtrio.channels.qmp._keys import _PLAIN, _SHIFTED

__all__ = [
    "MODIFIERS",
    "QmpSchema",
    "TYPEABLE",
    "byte_splits",
    "check_value",
    "key_combos",
    "qmp_arguments",
    "qmp_commands",
    "scenario_steps",
    "typeable_text",
]

#: Every character :func:`~virtrio.channels.qmp.text_to_combos` can type (US layout).
TYPEABLE = string.ascii_letters + string.digits + "".join(_PLAIN) + "".join(_SHIFTED)
#: Modifier qcodes a combo may hold before its key.
MODIFIERS = ("ctrl", "alt", "shift", "ctrl_r", "alt_r", "shift_r", "meta_l")
_KEYS = sorted(QCODES - set(MODIFIERS) - {"unmapped"})


def typeable_text(*, min_size: int = 0, max_size: int | None = 64) -> st.SearchStrategy[str]:
    """Text made only of characters a US keyboard types."""
    return st.text(alphabet=TYPEABLE, min_size=min_size, max_size=max_size)


@st.composite
def key_combos(draw: st.DrawFn, *, max_modifiers: int = 3) -> str:
    """A combo like ``ctrl-alt-delete``: distinct modifiers, then one non-modifier key."""
    modifiers = draw(st.lists(st.sampled_from(MODIFIERS), max_size=max_modifiers, unique=True))
    return "-".join([*modifiers, draw(st.sampled_from(_KEYS))])


@st.composite
def byte_splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points (empty chunks excluded): feed them one by one."""
    if not data:
        return []
    cuts = draw(st.lists(st.integers(1, len(data) - 1), unique=True)) if len(data) > 1 else []
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


_identifier = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


def scenario_steps() -> st.SearchStrategy[dict[str, Any]]:
    """Valid YAML scenario steps (as parsed maps) of the kinds that need no particular guest."""
    return st.one_of(
        st.builds(lambda s: {"sleep": s}, st.sampled_from([0, 0.01, 0.1])),
        st.builds(lambda k, v: {"set": {k: v}}, _identifier, st.text(TYPEABLE, max_size=10)),
        st.builds(lambda t: {"type": t}, typeable_text(max_size=16)),
        st.builds(lambda c: {"keys": c}, key_combos()),
        st.builds(lambda c: {"qmp": c}, st.sampled_from(["query-status", "query-version"])),
        st.builds(
            lambda c, code: {"shell": c, "expect_exit": code},
            st.sampled_from(["true", "echo hi", "exit 3"]),
            st.sampled_from([0, 3, None]),
        ),
        st.builds(
            lambda v, w: {"assert": {"value": v, "equals": w}},
            st.text(TYPEABLE, max_size=5),
            st.text(TYPEABLE, max_size=5),
        ),
    )


class QmpSchema:
    """QEMU's ``query-qmp-schema`` answer, indexed by entity name."""

    def __init__(self, entities: Iterable[Mapping[str, Any]]) -> None:
        self.entities: dict[str, Mapping[str, Any]] = {e["name"]: e for e in entities}

    def commands(self, predicate: Callable[[str], bool] | None = None) -> list[str]:
        """Command names (those ``predicate`` accepts), sorted."""
        return sorted(
            name
            for name, e in self.entities.items()
            if e["meta-type"] == "command" and (predicate is None or predicate(name))
        )

    def command(self, name: str) -> Mapping[str, Any]:
        """The command entity ``name`` (``arg-type``, ``ret-type``)."""
        entity = self.entities[name]
        if entity["meta-type"] != "command":
            raise KeyError(f"{name} is not a command")
        return entity


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=5,
)


def _strategy(schema: QmpSchema, type_name: str, depth: int) -> st.SearchStrategy[Any]:
    entity = schema.entities[type_name]
    meta = entity["meta-type"]
    if meta == "builtin":
        return {
            "string": st.text(max_size=16),
            "int": st.integers(-(2**63), 2**63 - 1),
            "number": st.floats(allow_nan=False, allow_infinity=False),
            "boolean": st.booleans(),
            "null": st.none(),
        }.get(entity["json-type"], _JSON)
    if meta == "enum":
        return st.sampled_from(_enum_values(entity))
    if meta == "array":
        if depth > 3:
            return st.just([])
        return st.lists(_strategy(schema, entity["element-type"], depth + 1), max_size=3)
    if meta == "alternate":
        return st.one_of([_strategy(schema, m["type"], depth + 1) for m in entity["members"]])
    if meta == "object":
        return _object(schema, entity, depth)
    raise ValueError(f"cannot generate a value of {type_name} ({meta})")


def _enum_values(entity: Mapping[str, Any]) -> list[str]:
    if "members" in entity:
        return [m["name"] for m in entity["members"]]
    return list(entity["values"])


def _object(schema: QmpSchema, entity: Mapping[str, Any], depth: int) -> st.SearchStrategy[Any]:
    members = entity.get("members", [])
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for member in members:
        if depth > 4 and "default" in member:
            continue  # deep down, only what is required: keeps examples small
        target = optional if "default" in member else required
        target[member["name"]] = _strategy(schema, member["type"], depth + 1)
    base = st.fixed_dictionaries(required, optional=optional)
    tag = entity.get("tag")
    variants = entity.get("variants", [])
    if tag is None or not variants:
        return base

    @st.composite
    def with_variant(draw: st.DrawFn) -> dict[str, Any]:
        value = draw(base)
        case = next((v for v in variants if v["case"] == value.get(tag)), None)
        if case is not None:
            value.update(draw(_strategy(schema, case["type"], depth + 1)))
        return value

    return with_variant()


def qmp_arguments(schema: QmpSchema, command: str) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed arguments of ``command``: every required member, any optional ones."""
    arg_type = schema.command(command).get("arg-type")
    if arg_type is None or arg_type not in schema.entities:
        return st.just({})
    strategy: st.SearchStrategy[dict[str, Any]] = _strategy(schema, arg_type, 0)
    return strategy


def qmp_commands(
    schema: QmpSchema, names: Sequence[str] | None = None
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """``(command, arguments)`` for the given commands (default: every command)."""
    chosen = list(names) if names is not None else schema.commands()
    return st.sampled_from(chosen).flatmap(
        lambda name: qmp_arguments(schema, name).map(lambda args: (name, args))
    )


def check_value(schema: QmpSchema, type_name: str, value: Any, path: str = "$") -> list[str]:
    """Where ``value`` does not fit the schema's ``type_name`` (empty: it fits)."""
    entity = schema.entities[type_name]
    meta = entity["meta-type"]
    if meta == "builtin":
        json_type = entity["json-type"]
        ok = {
            "string": isinstance(value, str),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "null": value is None,
        }.get(json_type, True)
        return [] if ok else [f"{path}: {value!r:.60} is not {json_type}"]
    if meta == "enum":
        values = _enum_values(entity)
        return [] if value in values else [f"{path}: {value!r:.60} is not one of {values[:8]}"]
    if meta == "array":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__} is not an array"]
        element = entity["element-type"]
        return [
            p for i, v in enumerate(value) for p in check_value(schema, element, v, f"{path}[{i}]")
        ]
    if meta == "alternate":
        options = [check_value(schema, m["type"], value, path) for m in entity["members"]]
        return [] if any(not o for o in options) else [f"{path}: fits no alternative: {options}"]
    if meta == "object":
        return _check_object(schema, entity, value, path)
    return [f"{path}: cannot check {meta}"]


def _check_object(schema: QmpSchema, entity: Mapping[str, Any], value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: {type(value).__name__} is not an object"]
    members = {m["name"]: m for m in entity.get("members", [])}
    tag = entity.get("tag")
    for variant in entity.get("variants", []):
        if tag is not None and value.get(tag) == variant["case"]:
            members.update({m["name"]: m for m in schema.entities[variant["type"]]["members"]})
    problems = []
    for name, member in members.items():
        if name in value:
            problems += check_value(schema, member["type"], value[name], f"{path}.{name}")
        elif "default" not in member:
            problems.append(f"{path}: required member {name!r} missing")
    problems += [f"{path}: unknown member {name!r}" for name in value if name not in members]
    return problems
