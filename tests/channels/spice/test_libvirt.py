"""Spice addresses from a libvirt domain's SpiceInfo."""

from __future__ import annotations

from virtrio.channels.libvirt import SpiceInfo
from virtrio.channels.spice._libvirt import spice_addresses


def test_spice_addresses_from_domain_xml() -> None:
    assert spice_addresses(SpiceInfo(None, None, None, socket="/run/s.sock")) == (
        "unix:/run/s.sock",
        None,
    )
    assert spice_addresses(SpiceInfo("127.0.0.1", 5900, 5901)) == (
        "tcp://127.0.0.1:5900",
        "tls://127.0.0.1:5901",
    )
    assert spice_addresses(SpiceInfo("0.0.0.0", 5900, None)) == ("tcp://127.0.0.1:5900", None)
    assert spice_addresses(SpiceInfo("::1", None, 5901)) == (None, "tls://[::1]:5901")
