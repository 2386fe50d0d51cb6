"""The demo guest image and the local QEMU launcher (public names)."""

from ._guest import (
    GuestBuildError as GuestBuildError,
    GuestImage as GuestImage,
    build_guest as build_guest,
    find_guest as find_guest,
    guest_cache_dir as guest_cache_dir,
    require_guest as require_guest,
)
from ._qemu import (
    AGENT_PORT as AGENT_PORT,
    QemuLaunch as QemuLaunch,
    QemuMachine as QemuMachine,
    QemuProcess as QemuProcess,
    open_qemu as open_qemu,
    plan_launch as plan_launch,
)

__all__ = [
    "AGENT_PORT",
    "GuestBuildError",
    "GuestImage",
    "QemuLaunch",
    "QemuMachine",
    "QemuProcess",
    "build_guest",
    "find_guest",
    "guest_cache_dir",
    "open_qemu",
    "plan_launch",
    "require_guest",
]
