"""What a session may use: the ``resources`` of ``POST /sessions`` checked against the
server's caps, and turned into the limits its emulator runs under (S10).

``memory_mb`` (the emulator's charged memory, not only guest RAM: QEMU itself needs ~40 MiB)
and ``cpus`` (CPU share) go through a cgroup; ``cpu_time_s`` (CPU seconds per emulator run)
through ``RLIMIT_CPU``; ``timeout_s`` is the session's wall-clock life. A cap the server was
started with (``--max-memory-mb``...) refuses a larger request with 422 naming the field, and
is the limit of a session that asks for none. Only the QEMU backend applies limits; another
backend refuses a session that asks for them.
"""

from __future__ import annotations

from typing import Any

import attrs

from virtrio.engine.backends import ResourceLimitExceededError, ResourceLimits, cgroup_support
from virtrio.errors import ConfigError

__all__ = [
    "ResourceCaps",
    "ResourceRequestError",
    "check_resources",
    "limit_failure",
    "limits_for",
]

#: each field's allowed range (before the server's caps)
RANGES: dict[str, tuple[float, float]] = {
    "memory_mb": (1, 65536),
    "cpus": (0.01, 64),
    "cpu_time_s": (1, 7 * 86400),
    "timeout_s": (0, 7 * 86400),
}
#: the fields a backend must enforce itself (timeout_s is the server's own)
ENFORCED = ("memory_mb", "cpus", "cpu_time_s")


class ResourceRequestError(ConfigError):
    """A ``resources`` field the server refuses (422 with ``code``, naming ``field``):
    ``invalid_request`` (type, range, unknown), ``over_cap`` (over a server cap),
    ``not_enforceable`` (the backend or machine cannot apply it)."""

    def __init__(
        self, field: str, message: str, *, code: str = "invalid_request", **details: Any
    ) -> None:
        super().__init__(f"resources.{field}: {message}")
        self.field = f"resources.{field}"
        self.code = code
        self.details = details


@attrs.frozen
class ResourceCaps:
    """The server's caps on what one session may ask for (None: no cap)."""

    memory_mb: int | None = None
    cpus: float | None = None
    cpu_time_s: float | None = None
    timeout_s: float | None = None


def check_resources(data: Any, caps: ResourceCaps) -> dict[str, Any]:
    """The session's resources: ``data`` checked (types, ranges, caps), with each cap as the
    value of a field the request leaves out.

    Raises:
        ResourceRequestError: a field is unknown, of the wrong type, out of range or over a cap.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ResourceRequestError("*", "resources must be an object")
    unknown = sorted(set(data) - {*RANGES, "trace"})
    if unknown:
        raise ResourceRequestError(
            unknown[0], f"unknown resources {unknown}", allowed=sorted({*RANGES, "trace"})
        )
    out: dict[str, Any] = {}
    if "trace" in data:  # a flag: the backend with coverage and trace on
        if not isinstance(data["trace"], bool):
            raise ResourceRequestError("trace", "must be true or false")
        out["trace"] = data["trace"]
    for name, (low, high) in RANGES.items():
        value = data.get(name)
        cap = getattr(caps, name)
        if value is None:
            if cap is not None:
                out[name] = cap
            continue
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise ResourceRequestError(name, f"{value!r} is not in [{low}, {high}]")
        if name == "memory_mb" and not isinstance(value, int):
            raise ResourceRequestError(name, f"{value!r} is not a whole number of MiB")
        if cap is not None and value > cap:
            flag = "--max-" + name.replace("_", "-")
            raise ResourceRequestError(
                name,
                f"{value} is over this server's cap of {cap} ({flag})",
                code="over_cap",
                cap=cap,
            )
        out[name] = value
    return out


def limits_for(backend: str, resources: dict[str, Any], *, enforces: bool) -> ResourceLimits:
    """The limits of a session on ``backend`` (``enforces``: whether it applies limits).

    Raises:
        ResourceRequestError: the backend, or this machine, cannot enforce a field asked for.
    """
    asked = [name for name in ENFORCED if resources.get(name) is not None]
    if asked and not enforces:
        raise ResourceRequestError(
            asked[0],
            f"the {backend} backend does not enforce resource limits (only qemu does)",
            code="not_enforceable",
        )
    support = cgroup_support()
    for name, controller in (("memory_mb", "memory"), ("cpus", "cpus")):
        if name in asked and support[controller] is None:
            raise ResourceRequestError(
                name,
                "this server cannot enforce it (no writable cgroup for it)",
                code="not_enforceable",
            )
    return ResourceLimits(
        memory_mb=resources.get("memory_mb"),
        cpus=resources.get("cpus"),
        cpu_time_s=resources.get("cpu_time_s"),
    )


def limit_failure(error: ResourceLimitExceededError) -> dict[str, Any]:
    """The error body a session that a limit killed shows as its ``failure``."""
    unit = {"memory": "MiB", "cpu_time": "s"}.get(error.resource, "")
    return {
        "error": str(error),
        "code": "resource_limit",
        "details": {"resource": error.resource, "limit": error.limit, "unit": unit},
    }
