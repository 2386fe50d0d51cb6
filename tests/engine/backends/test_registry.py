"""Backends by name through the ``virtrio.backends`` entry points."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from virtrio.engine.backends import (
    Capabilities,
    Capability,
    QemuBackend,
    UnsupportedCapabilityError,
    _registry,
    backend_names,
    load_backend,
)
from virtrio.errors import ConfigError


def test_ours_are_registered() -> None:
    assert {"qemu", "renode", "skyeye"} <= set(backend_names())
    backend = load_backend("qemu", trace=True)
    assert isinstance(backend, QemuBackend)
    assert backend.settings.trace


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown backend 'bochs' \(known backends: qemu, renode"
    ):
        load_backend("bochs")


def test_a_name_registered_twice_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    points = [
        EntryPoint("qemu", "virtrio.engine.backends:QemuBackend", _registry.ENTRY_POINT_GROUP),
        EntryPoint("qemu", "elsewhere:OtherQemu", _registry.ENTRY_POINT_GROUP),
    ]

    def fake(**kwargs: Any) -> list[EntryPoint]:
        assert kwargs == {"group": "virtrio.backends"}
        return points

    monkeypatch.setattr(_registry, "entry_points", fake)
    with pytest.raises(ConfigError, match=r"registered twice.*elsewhere:OtherQemu"):
        backend_names()
    with pytest.raises(ConfigError, match="registered twice"):
        load_backend("qemu")


def test_a_missing_capability_names_itself() -> None:
    caps = Capabilities("x", frozenset({Capability.POWER}), {Capability.SNAPSHOTS: "not here"})
    caps.require(Capability.POWER, doing="power_on")
    with pytest.raises(
        UnsupportedCapabilityError, match=r"create_snapshot needs capability 'snapshots'.*not here"
    ) as info:
        caps.require(Capability.SNAPSHOTS, doing="create_snapshot")
    assert info.value.capability is Capability.SNAPSHOTS
    assert caps.to_json()["supported"] == ["power"]
