"""The JSON Schema (draft 2020-12) of a board config, for tools and API documentation.

:func:`~virtrio.engine.backends.parse_board` is the authority (it also checks what a schema
cannot say: overlapping regions, references between nodes); the schema accepts exactly the
shapes it structures.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BOARD_CONFIG_SCHEMA"]

_SIZE: dict[str, Any] = {
    "description": "an integer, or text like '0x20000000', '64K', '16MiB'",
    "oneOf": [
        {"type": "integer", "minimum": 0},
        {
            "type": "string",
            "pattern": r"^\s*(0[xX][0-9a-fA-F_]+|[0-9][0-9_]*)\s*([KMG](i?B)?)?\s*$",
        },
    ],
}
_OPTIONS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": ["string", "integer", "boolean"]},
}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [{"type": "null"}, schema]}


_PROCESSOR = _object(
    ["type"],
    {
        "type": {"type": "string", "description": "cortex-m3, cortex-m4, qemu64, cortex-a57..."},
        "cores": {"type": "integer", "minimum": 1},
        "frequency": _nullable({"type": "integer", "exclusiveMinimum": 0}),
    },
)
_MEMORY = _object(
    ["type", "address", "size"],
    {
        "type": {"enum": ["RAM", "ROM", "Flash"]},
        "address": _SIZE,
        "size": _SIZE,
        "access": {"enum": ["RW", "RO", "WO"]},
        "name": {"type": "string"},
    },
)
_PERIPHERAL = _object(
    ["type", "name"],
    {
        "type": {"type": "string", "description": "uart, timer, gpio..."},
        "name": {"type": "string"},
        "address": _nullable(_SIZE),
        "irq": _nullable({"type": "integer", "minimum": 0}),
        "options": _OPTIONS,
    },
)
_NODE = _object(
    ["id", "backend", "processor"],
    {
        "id": {"type": "string", "minLength": 1},
        "backend": {"type": "string", "description": "qemu, renode, skyeye, or a plug-in's"},
        "processor": _PROCESSOR,
        "memory": {"type": "array", "items": _MEMORY},
        "peripherals": {"type": "array", "items": _PERIPHERAL},
        "machine": _nullable({"type": "string"}),
        "options": _OPTIONS,
    },
)
_STR_ARRAY = {"type": "array", "items": {"type": "string"}}
_INTERCONNECT = _object(
    [],
    {
        "shared_memory": {
            "type": "array",
            "items": _object(
                ["name", "address", "size", "nodes"],
                {"name": {"type": "string"}, "address": _SIZE, "size": _SIZE, "nodes": _STR_ARRAY},
            ),
        },
        "irq_routes": {
            "type": "array",
            "items": _object(
                ["source", "target", "irq"],
                {
                    "source": {"type": "string"},
                    "target": {"type": "string"},
                    "irq": {"type": "integer", "minimum": 0},
                },
            ),
        },
        "mmio_map": {
            "type": "array",
            "items": _object(
                ["node", "address", "size", "target"],
                {
                    "node": {"type": "string"},
                    "address": _SIZE,
                    "size": _SIZE,
                    "target": {"type": "string"},
                },
            ),
        },
    },
)

#: The schema of :class:`~virtrio.engine.backends.BoardConfig` as JSON.
BOARD_CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:virtrio:board-config",
    "title": "virtrio BoardConfig",
    **_object(
        ["system_id", "name", "nodes"],
        {
            "system_id": {"type": "string"},
            "name": {"type": "string"},
            "nodes": {"type": "array", "minItems": 1, "items": _NODE},
            "interconnect": _INTERCONNECT,
        },
    ),
}
