"""Scenarios: YAML files (read with line numbers) or Python functions, checked before they run.

A YAML scenario is a list of steps, or a map with ``name``, ``description``, ``timeout`` (the
default per-step deadline), ``vars`` and ``steps``::

    name: smoke
    timeout: 30
    steps:
      - shell: "uname -r"
        set: kernel                     # capture the output into ${kernel}
      - assert: {value: "${kernel}", matches: "^6\\\\."}
      - type: "echo hi\\n"
      - expect: {channel: console, pattern: "hi"}

Every step is one key naming its kind plus the common fields ``name``, ``timeout`` and ``set``.
Every problem (an unknown kind or field, a ``${var}`` no earlier step sets) is reported at once,
each as ``file:line: steps[i].field: message``, and nothing runs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from virtrio.errors import ConfigError

from ._registry import StepRegistry, default_steps

__all__ = [
    "COMMON_FIELDS",
    "PythonScenario",
    "Scenario",
    "ScenarioError",
    "Step",
    "load_scenario",
    "parse_scenario",
]

#: Fields every step takes.
COMMON_FIELDS = frozenset({"name", "timeout", "set"})
_TOP = frozenset({"name", "description", "timeout", "vars", "steps"})
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Variables every run sets: the VM's id and the repeat's number (from 1).
BUILTIN_VARS = frozenset({"vm", "iteration"})


class ScenarioError(ConfigError):
    """A scenario does not validate; :attr:`problems` lists every one (``file:line: ...``)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@attrs.frozen
class Step:
    """One step of a YAML scenario."""

    #: The kind (``shell``, ``expect``, ...).
    kind: str
    #: The value of the kind's own key (``"uname -r"`` for ``shell: "uname -r"``).
    value: Any
    #: The other fields (``expect_exit``, ``channel``, ...), without the common ones.
    fields: Mapping[str, Any]
    #: Position in the scenario (from 0).
    index: int
    #: A label for results: the ``name:`` field, else ``KIND VALUE`` shortened.
    label: str
    timeout: float | None = None
    #: ``set: VAR`` (capture the whole output) or ``set: {VAR: REGEX}`` (group 1, or the match).
    capture: tuple[str, str | None] | None = None
    #: ``file:line`` of the step.
    where: str = ""


@attrs.frozen
class Scenario:
    """A YAML scenario, validated."""

    name: str
    steps: tuple[Step, ...]
    description: str = ""
    #: Default per-step deadline (seconds).
    timeout: float = 60.0
    vars: Mapping[str, Any] = attrs.field(factory=dict)
    source: str = "<string>"


#: ``async def scenario(vm, ctx)``
ScenarioFunction = Callable[[Any, Any], Awaitable[None]]


@attrs.frozen
class PythonScenario:
    """A scenario written as ``async def scenario(vm, ctx)``; ``ctx.step(...)`` records steps."""

    name: str
    function: ScenarioFunction
    timeout: float = 60.0
    description: str = ""
    source: str = "<python>"


def _line(node: Any, key: Any = None) -> int | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            return int(lc.key(key)[0]) + 1
        return int(lc.line) + 1
    except (KeyError, TypeError, IndexError):
        return None


def _label(kind: str, value: Any) -> str:
    if isinstance(value, Mapping):
        text = " ".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, list):
        text = " ".join(map(str, value))
    else:
        text = "" if value is None else str(value)
    text = " ".join(text.split())
    return f"{kind} {text[:40]}{'…' if len(text) > 40 else ''}".strip()


def _vars_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_VAR.findall(value))
    if isinstance(value, Mapping):
        return set().union(*(_vars_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_vars_in(v) for v in value)) if value else set()
    return set()


def _plain(value: Any) -> Any:
    """ruamel's commented containers as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _capture(raw: Any) -> tuple[str, str | None] | str:
    if isinstance(raw, str) and raw.isidentifier():
        return (raw, None)
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((var, regex),) = raw.items()
        if isinstance(var, str) and var.isidentifier() and isinstance(regex, str):
            try:
                re.compile(regex)
            except re.error as exc:
                return f"invalid regex {regex!r}: {exc}"
            return (var, regex)
    return "expected a variable name, or {VAR: REGEX}"


def parse_scenario(
    text: str, *, source: str = "<string>", registry: StepRegistry | None = None
) -> Scenario:
    """Parse and check a YAML scenario.

    Raises:
        ScenarioError: every problem, each naming ``source:line`` and the step's field.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    steps_registry = registry if registry is not None else default_steps()
    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ScenarioError([f"{source}{line}: not valid YAML: {exc}"]) from None
    problems: list[str] = []
    top: Mapping[str, Any] = {}
    if isinstance(data, list):
        raw_steps: Any = data
    elif isinstance(data, Mapping):
        top = data
        for key in data:
            if key not in _TOP:
                problems.append(
                    f"{source}:{_line(data, key)}: {key}: unknown field "
                    f"(known: {', '.join(sorted(_TOP))})"
                )
        raw_steps = data.get("steps")
    else:
        raise ScenarioError([f"{source}:1: a scenario is a list of steps or a map with steps:"])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise ScenarioError([*problems, f"{source}:{_line(data) or 1}: steps: needs a list"])
    timeout = top.get("timeout", 60.0)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        problems.append(f"{source}:{_line(top, 'timeout')}: timeout: a positive number")
        timeout = 60.0
    variables = top.get("vars") or {}
    if not isinstance(variables, Mapping):
        problems.append(f"{source}:{_line(top, 'vars')}: vars: a map of names to values")
        variables = {}
    known = set(BUILTIN_VARS) | {str(k) for k in variables}
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        where = f"{source}:{_line(raw_steps, index) or _line(raw) or '?'}"
        path = f"steps[{index}]"
        if not isinstance(raw, Mapping) or not raw:
            problems.append(f"{where}: {path}: a step is a map like {{shell: 'uname -a'}}")
            continue
        kinds = [k for k in raw if k in steps_registry and k not in COMMON_FIELDS]
        if not kinds and list(raw) == ["set"]:
            kinds = ["set"]
        if len(kinds) != 1:
            unknown = [k for k in raw if k not in COMMON_FIELDS]
            what = (
                f"unknown step {unknown[0]!r}" if not kinds and unknown else
                "no step kind" if not kinds else f"two step kinds ({', '.join(kinds)})"
            )  # fmt: skip
            problems.append(f"{where}: {path}: {what} (known: {', '.join(steps_registry.names())})")
            continue
        kind_name = kinds[0]
        kind = steps_registry.get(kind_name)
        assert kind is not None
        fields: dict[str, Any] = {}
        for key, value in raw.items():
            if key == kind_name or (key in COMMON_FIELDS and kind_name != "set"):
                continue
            line = str(_line(raw, key) or where.rpartition(":")[2])
            if key not in kind.fields:
                allowed = sorted(kind.fields | COMMON_FIELDS)
                problems.append(
                    f"{source}:{line}: {path}.{key}: unknown field for {kind_name} "
                    f"(known: {', '.join(allowed)})"
                )
            else:
                fields[str(key)] = _plain(value)
        value = _plain(raw[kind_name])
        if value is None and kind.needs_value:
            problems.append(f"{where}: {path}.{kind_name}: needs a value")
        for problem in kind.check(value, fields):
            problems.append(f"{where}: {path}.{kind_name}: {problem}")
        for var in sorted(_vars_in(value) | _vars_in(fields)):
            if var not in known:
                problems.append(
                    f"{where}: {path}: ${{{var}}} is not set by vars: or an earlier step's set:"
                )
        step_timeout = raw.get("timeout") if kind_name != "set" else None
        if step_timeout is not None and (
            not isinstance(step_timeout, int | float)
            or isinstance(step_timeout, bool)
            or step_timeout <= 0
        ):
            problems.append(f"{where}: {path}.timeout: a positive number of seconds")
            step_timeout = None
        capture = None
        if kind_name == "set" and isinstance(value, Mapping):
            known |= {str(k) for k in value}
        elif "set" in raw:
            parsed = _capture(_plain(raw["set"]))
            if isinstance(parsed, str):
                problems.append(f"{where}: {path}.set: {parsed}")
            else:
                capture = parsed
                known.add(parsed[0])
        name = raw.get("name") if kind_name != "set" else None
        steps.append(
            Step(
                kind_name,
                value,
                fields,
                index,
                str(name) if name is not None else _label(kind_name, value),
                float(step_timeout) if step_timeout is not None else None,
                capture,
                where,
            )
        )
    if problems:
        raise ScenarioError(problems)
    default_name = Path(source).stem if source != "<string>" else "scenario"
    return Scenario(
        str(top.get("name") or default_name),
        tuple(steps),
        str(top.get("description") or ""),
        float(timeout),
        _plain(variables),
        source,
    )


def load_scenario(
    path: str | Path, *, registry: StepRegistry | None = None
) -> Scenario | PythonScenario:
    """A scenario from a ``.yaml``/``.yml`` file, or a ``.py`` file defining
    ``async def scenario(vm, ctx)``.

    Raises:
        ScenarioError: it does not validate (every problem, file:line).
        ConfigError: the file cannot be read, or a Python file has no ``scenario`` coroutine.
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {file}: {exc.strerror}") from None
    if file.suffix == ".py":
        import inspect
        import runpy

        namespace = runpy.run_path(str(file))
        function = namespace.get("scenario")
        if not inspect.iscoroutinefunction(function):
            raise ConfigError(f"{file}: defines no `async def scenario(vm, ctx)`")
        return PythonScenario(
            str(namespace.get("NAME", file.stem)),
            function,
            float(namespace.get("TIMEOUT", 60.0)),
            inspect.getdoc(function) or "",
            str(file),
        )
    return parse_scenario(text, source=str(file), registry=registry)
