"""Backends by name, through the entry-point group ``virtrio.backends``.

A distribution registers a backend in its ``pyproject.toml``::

    [project.entry-points."virtrio.backends"]
    mysim = "mysim.virtrio:MySimBackend"

The object named is called with the caller's settings (``load_backend("qemu", binary=...)``)
and must give a :class:`~virtrio.engine.backends.Backend`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, cast

from virtrio.errors import ConfigError

from ._adapter import Backend

__all__ = ["ENTRY_POINT_GROUP", "backend_names", "load_backend"]

ENTRY_POINT_GROUP = "virtrio.backends"


def _registered() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        other = found.get(point.name)
        if other is not None and other.value != point.value:
            raise ConfigError(
                f"backend name {point.name!r} is registered twice in entry-point group "
                f"{ENTRY_POINT_GROUP!r}: {other.value} and {point.value}"
            )
        found[point.name] = point
    return found


def backend_names() -> list[str]:
    """The names of every registered backend.

    Raises:
        ConfigError: two distributions register the same name.
    """
    return sorted(_registered())


def load_backend(name: str, **settings: Any) -> Backend:
    """The backend registered as ``name``, built with ``settings``.

    Raises:
        ConfigError: no backend has this name (the message lists the known ones), or two
            distributions register it.
    """
    registered = _registered()
    point = registered.get(name)
    if point is None:
        known = ", ".join(sorted(registered)) or "none"
        raise ConfigError(f"unknown backend {name!r} (known backends: {known})")
    factory = cast(Callable[..., Backend], point.load())
    return factory(**settings)


if TYPE_CHECKING:  # mypy proves that our backends and instances fit the protocols
    from ._adapter import BackendInstance
    from ._qemu_backend import QemuBackend
    from ._qemu_instance import QemuInstance
    from ._renode import RenodeBackend, RenodeInstance
    from ._skyeye import SkyEyeBackend, SkyEyeInstance

    _backends: tuple[Backend, ...] = (QemuBackend(), RenodeBackend(), SkyEyeBackend())
    _instances: tuple[type[BackendInstance], ...] = (QemuInstance, RenodeInstance, SkyEyeInstance)
