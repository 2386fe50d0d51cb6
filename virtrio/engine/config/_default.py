"""The embedded default fleet: N demo guests, each with qmp, qga, console and mux0."""

from __future__ import annotations

from virtrio.nurseries import (
    MuxOptions,
    QgaOptions,
    QmpOptions,
    SerialConsoleOptions,
    SpiceOptions,
)

from ._model import ChannelConfig, Fleet, QemuConfig, VmConfig

__all__ = ["default_fleet", "demo_channels"]


def demo_channels(*, spice: bool = False) -> dict[str, ChannelConfig]:
    """The channels of a demo guest: ``qmp``, ``qga``, ``console`` (its serial console) and
    ``mux0`` (yamux to the Go peer on the virtio-serial port ``org.virtrio.mux0``); with
    ``spice``, also ``spice`` (the Spice server of a guest launched with ``spice: true``)."""
    channels = {
        "qmp": ChannelConfig("qmp", QmpOptions()),
        "qga": ChannelConfig("qga", QgaOptions()),
        "console": ChannelConfig("serial-console", SerialConsoleOptions()),
        "mux0": ChannelConfig("mux", MuxOptions(port="org.virtrio.mux0")),
    }
    if spice:
        channels["spice"] = ChannelConfig("spice", SpiceOptions())
    return channels


def default_fleet(vms: int = 2, *, spice: bool = False) -> Fleet:
    """``vms`` demo guests named ``demo1``, ``demo2``, ... launched by the engine (with
    ``spice``, each with a VGA display served over Spice and a ``spice`` channel)."""
    if vms < 1:
        raise ValueError("a fleet needs at least one VM")
    return Fleet(
        vms=tuple(
            VmConfig(
                f"demo{i}",
                qemu=QemuConfig(template="demo", spice=spice),
                tags=("demo",),
                channels=demo_channels(spice=spice),
            )
            for i in range(1, vms + 1)
        ),
        source="<default>",
    )
