"""Loading a fleet file: YAML (ruamel.yaml, for line numbers) into the attrs classes (cattrs).

Every problem is reported at once, each as ``file:line: field.path: message``::

    fleet.yaml:14: vms[1].channels.console.kind: unknown channel kind 'serail' (known: ...)

Structuring is strict: a string is not taken for a number, nor ``"no"`` for a boolean, and an
unknown field is an error (naming the known ones). A channel's options are structured into its
kind's own options class, looked up in the channel-kind registry.
"""

from __future__ import annotations

import os
import types
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from virtrio.errors import ConfigError
from virtrio.nurseries import KindRegistry, default_registry

from ._model import ChannelConfig, Fleet

__all__ = ["FleetError", "FleetIssue", "load_fleet", "parse_fleet"]

#: QEMU templates the engine knows.
TEMPLATES = ("demo",)

Path_ = tuple[str | int, ...]


@attrs.frozen
class FleetIssue:
    """One problem in a fleet file."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class FleetError(ConfigError):
    """A fleet file has problems; :attr:`issues` lists every one (``str()`` shows them all)."""

    def __init__(self, issues: Sequence[FleetIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = list(issues)


class _FieldError(Exception):
    def __init__(self, suffix: Path_, message: str) -> None:
        super().__init__(message)
        self.suffix = suffix


def _format_path(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _type_name(t: Any) -> str:
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        t, getattr(t, "__name__", str(t))
    )


def _strict(t: type) -> Any:
    def hook(value: Any, _: Any) -> Any:
        ok = isinstance(value, t) and not (t is not bool and isinstance(value, bool))
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not ok:
            raise _FieldError((), f"expected {_type_name(t)}, got {value!r}")
        return value

    return hook


def _is_literal(t: Any) -> bool:
    return get_origin(t) is Literal


def _is_optional(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) in (Union, types.UnionType) and len(args) == 2 and type(None) in args


def _is_sequence(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


_converters: weakref.WeakKeyDictionary[KindRegistry, cattrs.Converter] = weakref.WeakKeyDictionary()


def _converter(registry: KindRegistry) -> cattrs.Converter:
    conv = _converters.get(registry)
    if conv is None:
        conv = _converters[registry] = _make_converter(registry)
    return conv


def _make_converter(registry: KindRegistry) -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for t in (str, int, float, bool):
        conv.register_structure_hook(t, _strict(t))

    def literal(value: Any, t: Any) -> Any:
        if value not in get_args(t):
            choices = ", ".join(repr(a) for a in get_args(t))
            raise _FieldError((), f"expected one of {choices}, got {value!r}")
        return value

    conv.register_structure_hook_func(_is_literal, literal)

    def sequence(value: Any, t: Any) -> Any:
        if not isinstance(value, list):
            raise _FieldError((), f"expected a list, got {value!r}")
        inner = get_args(t)[0]
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(conv.structure(item, inner))
            except Exception as exc:
                exc.add_note(IterableValidationNote(f"index {index}", index, inner))
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"while structuring {t}", errors, t)
        return tuple(items)

    conv.register_structure_hook_func(_is_sequence, sequence)

    def optional(value: Any, t: Any) -> Any:
        if value is None:
            return None
        (inner,) = [a for a in get_args(t) if a is not type(None)]
        return conv.structure(value, inner)

    conv.register_structure_hook_func(_is_optional, optional)

    def channel(value: Any, _: Any) -> ChannelConfig:
        if not isinstance(value, dict):
            raise _FieldError((), f"expected a map with a 'kind', got {value!r}")
        fields = dict(value)
        kind_name = fields.pop("kind", None)
        if kind_name is None:
            raise _FieldError((), f"missing 'kind' (known: {', '.join(registry.names())})")
        if not isinstance(kind_name, str) or kind_name not in registry:
            raise _FieldError(("kind",), registry.unknown_message(kind_name))
        kind = registry.get(kind_name)
        missing = kind.missing()
        if missing is not None:
            raise _FieldError(("kind",), missing)
        try:
            options: Any = conv.structure(fields, kind.options)
        except Exception as exc:
            # a validator of the options class failed (in its __init__, or not run because
            # another field did not structure): find which fields, and report them all
            bad: list[Exception] = []
            for field in attrs.fields(kind.options):
                if field.validator is not None and field.name in fields:
                    try:
                        field.validator(None, field, fields[field.name])
                    except Exception as failed:
                        bad.append(_FieldError((field.name,), str(failed)))
            if not bad:
                raise
            if isinstance(exc, ClassValidationError):
                # the fields that did not structure carry a note naming them; __init__'s
                # own error (a validator's, reported above) carries none
                bad[:0] = [e for e in exc.exceptions if getattr(e, "__notes__", None)]
            raise ExceptionGroup(f"channel options of {kind_name}", bad) from None
        return ChannelConfig(kind_name, options)

    conv.register_structure_hook(ChannelConfig, channel)
    return conv


def _walk(exc: BaseException, path: Path_) -> Iterator[tuple[Path_, str]]:
    notes = getattr(exc, "__notes__", None) or []
    for note in notes:
        name = getattr(note, "name", None)
        index = getattr(note, "index", None)
        if name is not None:
            path = (*path, name)
        elif index is not None:
            path = (*path, index)
    if isinstance(exc, ForbiddenExtraKeysError):
        known = sorted(a.name for a in attrs.fields(exc.cl) if a.init and a.name != "source")
        for extra in sorted(exc.extra_fields):
            yield (*path, extra), f"unknown field (known: {', '.join(known)})"
    elif isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _walk(sub, path)
    elif isinstance(exc, _FieldError):
        yield (*path, *exc.suffix), str(exc)
    elif isinstance(exc, KeyError):
        yield path, "required field missing"
    elif isinstance(exc, TypeError) and "argument" in str(exc):
        yield path, f"expected a map of fields, got something else ({exc})"
    else:
        yield path, str(exc)


def _line(root: Any, path: Path_) -> int:
    """The 1-based line of the deepest part of ``path`` present in the YAML tree."""
    node, line = root, 0
    for part in path:
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node and lc is not None:
            line = lc.key(part)[0]
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            line = lc.item(part)[0] if lc is not None else line
            node = node[part]
        else:
            break
    return line + 1


def _check(data: Any) -> Iterator[tuple[Path_, str]]:
    """What types cannot say: references, uniqueness, one of domain/qemu."""
    if not isinstance(data, dict):
        return
    hosts = data.get("hosts") or []
    host_ids = set()
    if isinstance(hosts, list):
        for i, host in enumerate(hosts):
            if isinstance(host, dict) and isinstance(host.get("id"), str):
                if host["id"] in host_ids:
                    yield ("hosts", i, "id"), f"duplicate host id {host['id']!r}"
                host_ids.add(host["id"])
    vms = data.get("vms") or []
    if not isinstance(vms, list):
        return
    seen: set[str] = set()
    for i, vm in enumerate(vms):
        if not isinstance(vm, dict):
            continue
        vm_id = vm.get("id")
        if isinstance(vm_id, str):
            if vm_id in seen:
                yield ("vms", i, "id"), f"duplicate VM id {vm_id!r}"
            seen.add(vm_id)
        has_host, has_qemu = vm.get("host") is not None, vm.get("qemu") is not None
        if has_host and has_qemu:
            yield ("vms", i), "give either host (with domain) or qemu, not both"
        elif not has_host and not has_qemu and not vm.get("channels"):
            yield (
                ("vms", i),
                "give a host (with domain), a qemu to launch, or channels with addresses",
            )
        if vm.get("domain") is not None and not has_host:
            yield ("vms", i, "domain"), "a domain needs a host"
        if has_host and isinstance(vm["host"], str) and vm["host"] not in host_ids:
            known = ", ".join(sorted(host_ids)) or "none"
            yield ("vms", i, "host"), f"unknown host {vm['host']!r} (hosts: {known})"
        qemu = vm.get("qemu")
        if isinstance(qemu, dict):
            template = qemu.get("template")
            if template is not None and template not in TEMPLATES:
                yield (
                    ("vms", i, "qemu", "template"),
                    f"unknown template {template!r} (known: {', '.join(TEMPLATES)})",
                )
            bootable = qemu.get("kernel") is not None or qemu.get("disk") is not None
            if template is None and not bootable and qemu.get("machine") != "none":
                yield (
                    ("vms", i, "qemu"),
                    "give a template, a kernel or disk to boot, or machine: none",
                )


def parse_fleet(
    text: str, *, source: str = "<fleet>", registry: KindRegistry | None = None
) -> Fleet:
    """Structure the YAML ``text`` into a :class:`Fleet` (``source`` names it in errors).

    Raises:
        FleetError: every problem found, each with its line and field path.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt", pure=True)
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise FleetError([FleetIssue(source, line, "", f"YAML: {exc.problem}")]) from None
    except YAMLError as exc:
        raise FleetError([FleetIssue(source, 1, "", f"YAML: {exc}")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FleetError([FleetIssue(source, 1, "", "a fleet is a map (hosts:, vms:, ...)")])
    found: list[tuple[Path_, str]] = list(_check(data))
    fleet: Fleet | None = None
    if "source" in data:
        found.append((("source",), "unknown field"))
    else:
        try:
            fleet = _converter(registry or default_registry()).structure(data, Fleet)
        except Exception as exc:
            found.extend(_walk(exc, ()))
    if found:
        issues = sorted(
            {FleetIssue(source, _line(data, p), _format_path(p), m) for p, m in found},
            key=lambda i: (i.line, i.path, i.message),
        )
        raise FleetError(issues)
    assert fleet is not None
    return attrs.evolve(fleet, source=source)


def load_fleet(path: str | os.PathLike[str], *, registry: KindRegistry | None = None) -> Fleet:
    """Load the fleet file ``path``.

    Raises:
        FleetError: every problem in it, each as ``file:line: field.path: message``.
        ConfigError: the file cannot be read.
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the fleet file: {exc.strerror}") from None
    return parse_fleet(text, source=str(file), registry=registry)
