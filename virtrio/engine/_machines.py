"""What the engine launches for a VM's ``qemu:`` and which channels it gets by default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._qemu import QemuMachine
from .config import ChannelConfig, VmConfig, demo_channels

__all__ = ["channels_for", "machine_for"]


def machine_for(config: VmConfig, image: Any) -> QemuMachine:
    """The QEMU to launch for ``config`` (which has a ``qemu:``; ``image``: the demo guest)."""
    qemu = config.qemu
    assert qemu is not None
    # the channels it gets, given or its template's (a demo VM of a fleet file that names
    # none gets mux0, whose port QEMU must then serve)
    channels = channels_for(config)
    ports = list(qemu.ports)
    for name, channel in channels.items():
        port = None
        if channel.kind == "virtio-serial" and getattr(channel.options, "address", None) is None:
            port = getattr(channel.options, "port", None) or name
        elif channel.kind == "mux" and getattr(channel.options, "address", None) is None:
            port = getattr(channel.options, "port", None) or f"org.virtrio.{name}"
        if port is not None and port not in ports:
            ports.append(port)

    def wants(kind: str) -> bool:
        return any(
            c.kind == kind and getattr(c.options, "address", None) is None
            for c in channels.values()
        )

    if qemu.template == "demo":
        return QemuMachine.demo(
            image,
            ports=ports,
            console_socket=True,
            machine=qemu.machine,
            extra_args=qemu.extra_args,
            spice=qemu.spice or wants("spice"),
        )

    extra = list(qemu.extra_args)
    if qemu.disk is not None:
        extra += ["-drive", f"file={qemu.disk},if=virtio,snapshot=on"]
    return QemuMachine(
        machine=qemu.machine,
        memory_mib=qemu.memory_mib,
        kernel=Path(qemu.kernel) if qemu.kernel else None,
        initrd=Path(qemu.initrd) if qemu.initrd else None,
        append=qemu.append,
        agent=wants("qga"),
        ports=tuple(ports),
        console_log=wants("serial-console"),
        console_socket=wants("serial-console"),
        extra_args=tuple(extra),
        spice=qemu.spice or wants("spice"),
    )


def channels_for(config: VmConfig) -> dict[str, ChannelConfig]:
    """The VM's channels: those it names, else its template's; ``spice`` for ``spice: true``."""
    channels = _given_channels(config)
    if (
        config.qemu is not None
        and config.qemu.spice
        and not any(c.kind == "spice" for c in channels.values())
    ):
        channels["spice"] = ChannelConfig("spice", None)
    return channels


def _given_channels(config: VmConfig) -> dict[str, ChannelConfig]:
    if config.channels:
        return dict(config.channels)
    if config.qemu is not None and config.qemu.template == "demo":
        return demo_channels()
    if config.qemu is not None:
        return {"qmp": ChannelConfig("qmp", None), "console": ChannelConfig("serial-console")}
    return {"qmp": ChannelConfig("qmp", None), "qga": ChannelConfig("qga", None)}
