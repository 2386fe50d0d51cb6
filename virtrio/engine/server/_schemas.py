"""The JSON Schemas of the OpenAPI document's components."""

from __future__ import annotations

from typing import Any

__all__ = ["ARTEFACT", "BREAKPOINT", "COMPONENTS", "ERROR", "PAGE_OF", "SESSION", "TASK", "ref"]

SESSION, BREAKPOINT, ERROR, TASK, ARTEFACT = "Session", "Breakpoint", "Error", "Task", "Artefact"
_NUM = {"type": "number"}
_STR = {"type": "string"}
_NULL_STR = {"type": ["string", "null"]}

COMPONENTS: dict[str, dict[str, Any]] = {
    ERROR: {
        "type": "object",
        "required": ["error", "code", "details"],
        "properties": {"error": _STR, "code": _STR, "details": {"type": "object"}},
    },
    SESSION: {
        "type": "object",
        "required": ["id", "owner", "backend", "board", "resources", "state", "created_at"],
        "properties": {
            "id": _STR,
            "owner": _STR,
            "backend": _STR,
            "board": {"type": "object"},
            "resources": {"type": "object"},
            "created_at": _NUM,
            "updated_at": _NUM,
            "server": _STR,
            "detail": _STR,
            "failure": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Error"}]},
            "state": {"enum": ["creating", "running", "stopped", "expired", "failed", "lost"]},
        },
    },
    BREAKPOINT: {
        "type": "object",
        "required": ["id", "kind"],
        "properties": {
            "id": _STR,
            "address": {"type": ["integer", "null"]},
            "symbol": _NULL_STR,
            "kind": _STR,
            "length": {"type": "integer"},
        },
    },
    TASK: {
        "type": "object",
        "required": ["id", "session_id", "kind", "state"],
        "properties": {
            "id": _STR,
            "session_id": _STR,
            "kind": _STR,
            "result": {},
            "state": {"enum": ["pending", "running", "succeeded", "failed"]},
            "error": {"type": ["object", "null"]},
            "created_at": _NUM,
            "finished_at": {"type": ["number", "null"]},
        },
    },
    ARTEFACT: {
        "type": "object",
        "required": ["digest", "size", "media_type", "url"],
        "properties": {
            "digest": _STR,
            "size": {"type": "integer"},
            "media_type": _STR,
            "url": _STR,
        },
    },
}


def ref(name: str) -> dict[str, Any]:
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def PAGE_OF(name: str) -> dict[str, Any]:
    """A page of ``name`` items."""
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": {"type": "array", "items": ref(name)}, "next_cursor": _NULL_STR},
    }
