"""A JSON Schema (draft 2020-12) of fleet files, generated from the attrs classes and the
registered channel kinds, for editors (``virtrio fleet schema``)."""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

import attrs

from virtrio.nurseries import KindRegistry, default_registry

from ._model import ChannelConfig, Fleet

__all__ = ["fleet_schema"]


def _type(t: Any, registry: KindRegistry) -> dict[str, Any]:
    origin = get_origin(t)
    if t is ChannelConfig:
        return {"$ref": "#/$defs/channel"}
    if t is str:
        return {"type": "string"}
    if t is bool:
        return {"type": "boolean"}
    if t is int:
        return {"type": "integer"}
    if t is float:
        return {"type": "number"}
    if t is Any:
        return {}
    if origin is Literal:
        return {"enum": list(get_args(t))}
    if origin in (Union, types.UnionType):
        options = [_type(a, registry) for a in get_args(t) if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        if type(None) in get_args(t):
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin is tuple:
        return {"type": "array", "items": _type(get_args(t)[0], registry)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type(get_args(t)[1], registry)}
    if attrs.has(t):
        return _object(t, registry)
    raise TypeError(f"no schema for {t!r}")


def _object(
    cls: type, registry: KindRegistry, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    attrs.resolve_types(cls)
    properties: dict[str, Any] = dict(extra or {})
    required = list(extra or {})
    for field in attrs.fields(cls):
        if not field.init or field.name == "source":
            continue
        schema = _type(field.type, registry)
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif not isinstance(field.default, attrs.Factory) and not attrs.has(type(field.default)):  # type: ignore[arg-type]
            default = field.default
            schema["default"] = list(default) if isinstance(default, tuple) else default
        doc = (cls.__doc__ or "").strip().splitlines()
        if doc and field.name == "kind":
            schema["description"] = doc[0]
        properties[field.name] = schema
    result: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        result["required"] = required
    if cls.__doc__:
        result["description"] = cls.__doc__.strip().splitlines()[0]
    return result


def fleet_schema(registry: KindRegistry | None = None) -> dict[str, Any]:
    """The JSON Schema of a fleet file, with one branch per registered channel kind."""
    kinds = registry if registry is not None else default_registry()
    channels = [
        _object(
            kind.options, kinds, {"kind": {"const": kind.name, "description": kind.description}}
        )
        for kind in kinds
    ]
    schema = _object(Fleet, kinds)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "virtrio fleet"
    schema["$defs"] = {"channel": {"oneOf": channels}}
    return schema
