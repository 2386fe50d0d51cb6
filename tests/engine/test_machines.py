"""What the engine launches for a fleet file's VMs that name no channels: the sockets of the
channels they get by default (their template's), so every default channel has its peer."""

from __future__ import annotations

from pathlib import Path

from virtrio.engine._machines import channels_for, machine_for
from virtrio.engine.config import parse_fleet
from virtrio.engine.guest import GuestImage

FLEET = """\
vms:
  - id: demo
    qemu: {template: demo}
  - id: shown
    qemu: {template: demo, spice: true}
  - id: bare
    qemu: {machine: none}
"""


def test_default_channels_get_their_sockets() -> None:
    fleet = parse_fleet(FLEET)
    image = GuestImage(Path("vmlinux"), Path("initrd.cpio"), "6.1.0-test")  # not booted
    demo = machine_for(fleet.vm("demo"), image)
    assert set(channels_for(fleet.vm("demo"))) == {"qmp", "qga", "console", "mux0"}
    assert demo.ports == ("org.virtrio.mux0",)  # the mux0 channel's port (it was missing)
    assert (demo.agent, demo.console_socket, demo.spice) == (True, True, False)
    shown = machine_for(fleet.vm("shown"), image)
    assert "spice" in channels_for(fleet.vm("shown"))
    assert (shown.spice, shown.ports) == (True, ("org.virtrio.mux0",))
    bare = machine_for(fleet.vm("bare"), image)
    assert set(channels_for(fleet.vm("bare"))) == {"qmp", "console"}
    assert (bare.console_socket, bare.agent, bare.ports) == (True, False, ())
