"""A fleet back to YAML (``load_fleet`` of the result gives an equal fleet)."""

from __future__ import annotations

import io
from typing import Any

import attrs

from ._model import ChannelConfig, Fleet

__all__ = ["dump_fleet", "fleet_data"]


def _plain(value: Any) -> Any:
    if isinstance(value, ChannelConfig):
        options = _plain(value.options) if value.options is not None else {}
        return {"kind": value.kind, **options}
    if attrs.has(type(value)):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if f.init and f.name != "source"
        }
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def fleet_data(fleet: Fleet) -> dict[str, Any]:
    """The fleet as plain maps, lists and scalars (every field, defaults included)."""
    data: dict[str, Any] = _plain(fleet)
    return data


def dump_fleet(fleet: Fleet) -> str:
    """The fleet as a YAML document."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(fleet_data(fleet), out)
    return out.getvalue()
