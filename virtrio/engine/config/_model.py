"""The fleet's shape: attrs classes that a YAML file is structured into (see :mod:`._load`).

Seed 001 §5 gave ``hosts:`` (libvirt URIs) and ``spice: vms:``; virtrio adds ``vms:`` (a domain
on a host, or a QEMU the engine launches), each VM's ``channels:`` and ``defaults:``.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = [
    "ChannelConfig",
    "Defaults",
    "Fleet",
    "HostConfig",
    "QemuConfig",
    "SpiceConfig",
    "SpiceVmConfig",
    "VmConfig",
]


@attrs.frozen
class Defaults:
    """Timeouts and backoff bounds every channel of the fleet uses unless it says otherwise."""

    #: Deadline of one connection attempt, seconds.
    connect_timeout: float = 10.0
    #: Default deadline of a call through a handle (a wait for a reconnect included), seconds.
    call_timeout: float = 30.0
    #: First reconnect delay, seconds.
    backoff_initial: float = 1.0
    #: Longest reconnect delay, seconds.
    backoff_max: float = 60.0
    #: How long a launched QEMU may take to quit before SIGTERM, then SIGKILL, seconds.
    stop_grace: float = 5.0


@attrs.frozen
class HostConfig:
    """A libvirt host: one connection shared by every VM on it."""

    id: str
    #: The libvirt URI (``qemu+ssh://root@10.0.0.5/system``, ``qemu:///system``, ...).
    uri: str
    #: Seconds between libvirt keepalives.
    keepalive_interval: int = 30
    #: Unanswered keepalives before the connection counts as lost.
    keepalive_count: int = 5


@attrs.frozen
class QemuConfig:
    """A QEMU the engine launches and owns: a template (``demo``) or a machine description."""

    #: ``demo`` (the demo guest) or None for a machine described by the fields below.
    template: str | None = None
    machine: str = "pc"
    memory_mib: int = 128
    kernel: str | None = None
    initrd: str | None = None
    append: str = ""
    disk: str | None = None
    #: Extra virtio-serial ports to create (each served on a host socket).
    ports: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()
    #: A VGA display served over Spice (on a socket in the VM's folder), and a ``spice``
    #: channel to it unless ``channels:`` has one.
    spice: bool = False


@attrs.frozen
class ChannelConfig:
    """One channel of a VM: its kind (a name in the channel-kind registry) and the kind's
    options, structured into the kind's own options class."""

    kind: str
    options: Any = None


@attrs.frozen
class VmConfig:
    """A VM: a libvirt ``domain`` on ``host``, a ``qemu`` the engine launches, or neither (a
    VM started elsewhere, reached at the addresses its channels give)."""

    id: str
    host: str | None = None
    #: The domain name on ``host`` (default: the VM's id).
    domain: str | None = None
    qemu: QemuConfig | None = None
    tags: tuple[str, ...] = ()
    channels: dict[str, ChannelConfig] = attrs.field(factory=dict)


@attrs.frozen
class SpiceVmConfig:
    """A Spice server of a VM, as seed 001 §5 lists them."""

    vm_id: str
    server_addr: str
    port: int
    password: str = ""
    tls: bool = False
    tls_verify: bool = True


@attrs.frozen
class SpiceConfig:
    """The Spice manager's VMs."""

    vms: tuple[SpiceVmConfig, ...] = ()


@attrs.frozen
class Fleet:
    """A whole fleet: hosts, VMs, Spice servers and defaults."""

    hosts: tuple[HostConfig, ...] = ()
    vms: tuple[VmConfig, ...] = ()
    spice: SpiceConfig = SpiceConfig()
    defaults: Defaults = Defaults()
    #: Where it was loaded from (for messages), if from a file.
    source: str | None = attrs.field(default=None, eq=False)

    def vm(self, vm_id: str) -> VmConfig:
        """The VM ``vm_id``.

        Raises:
            KeyError: no such VM.
        """
        for vm in self.vms:
            if vm.id == vm_id:
                return vm
        raise KeyError(vm_id)
