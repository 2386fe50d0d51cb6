"""What virtrio needs from a domain's XML, as a pure function of the text (no libvirt, no I/O).

:func:`parse_domain_xml` finds:

* the QMP socket: a ``-qmp``/``-chardev``+``-mon`` in ``<qemu:commandline>`` (the extra monitor
  an operator adds for direct clients), and the path of libvirt's own monitor for the system
  driver (:meth:`DomainXml.libvirt_monitor_socket`: the seed had it hard-coded);
* the Spice display: listen address, port, TLS port, or its Unix socket;
* the virtio-serial channels by name, with their host side (a Unix socket path or a pty).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import attrs

from virtrio.channels._addresses import Address
from virtrio.errors import ProtocolError

from ._errors import LibvirtError

__all__ = ["ChannelInfo", "DomainXml", "DomainXmlError", "SpiceInfo", "parse_domain_xml"]

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
#: libvirt's VIR_DOMAIN_SHORT_NAME_MAX: run-directory names use at most this many characters
SHORT_NAME_MAX = 20


class DomainXmlError(LibvirtError, ProtocolError):
    """The domain XML is not well-formed or has a value that cannot be what libvirt writes."""


@attrs.frozen
class SpiceInfo:
    """The Spice display of a domain."""

    #: listen address (``127.0.0.1``), None when listening on a Unix socket
    address: str | None
    #: plain port, None when not allocated (inactive domain with autoport) or disabled
    port: int | None
    #: TLS port, None when there is none
    tls_port: int | None
    #: the Unix socket path for ``<listen type='socket'>``
    socket: str | None = None
    autoport: bool = False

    @property
    def uri(self) -> str | None:
        """``spice://host:port`` (as ``virsh domdisplay`` prints it), or None."""
        if self.address is None or self.port is None:
            return None
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"spice://{host}:{self.port}"


@attrs.frozen
class ChannelInfo:
    """A virtio-serial channel of a domain."""

    #: the port name the guest sees (``org.qemu.guest_agent.0``)
    name: str
    #: the host side's type: ``unix``, ``pty``, ``spicevmc``, ...
    type: str
    #: the host side: a Unix socket path or a pty device, if any
    path: str | None = None
    #: libvirt's alias (``channel0``), known for running domains
    alias: str | None = None
    #: ``connected``/``disconnected`` (guest side open or not), when libvirt reports it
    state: str | None = None

    @property
    def address(self) -> Address | None:
        """The host socket as an address, for a ``unix`` channel with a path."""
        return Address.unix(self.path) if self.type == "unix" and self.path else None


@attrs.frozen
class DomainXml:
    """The parts of a domain XML virtrio uses."""

    name: str
    uuid: str | None
    #: the running domain's id, None when inactive
    id: int | None
    #: the virtualization type: ``qemu``, ``kvm``, ``test``
    type: str
    #: extra QMP monitors given on the QEMU command line, as addresses
    qmp_sockets: tuple[Address, ...] = ()
    spice: SpiceInfo | None = None
    channels: tuple[ChannelInfo, ...] = ()

    def channel(self, name: str) -> ChannelInfo:
        """The virtio-serial channel whose port name (or alias) is ``name``.

        Raises:
            KeyError: no such channel; the message lists the ones there are.
        """
        for channel in self.channels:
            if name in (channel.name, channel.alias):
                return channel
        names = ", ".join(c.name for c in self.channels) or "none"
        raise KeyError(f"domain {self.name} has no channel {name!r} (channels: {names})")

    @property
    def short_name(self) -> str:
        """The name as libvirt truncates it in run-directory names."""
        return self.name[:SHORT_NAME_MAX]

    def libvirt_monitor_socket(self, state_dir: str = "/var/lib/libvirt/qemu") -> str | None:
        """Where libvirt's own QMP socket is, for a running domain (None when inactive).

        ``state_dir`` is the QEMU driver's state directory (the system driver's default).
        libvirt holds that monitor itself: a second client cannot connect to it, so use it only
        when libvirt is not running the domain, or use QMP through libvirt.
        """
        if self.id is None:
            return None
        return f"{state_dir}/domain-{self.id}-{self.short_name}/monitor.sock"


def _int(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise DomainXmlError(f"domain XML: {what} is {value!r}, not a number") from None
    return number


def _port(value: str | None, what: str) -> int | None:
    number = _int(value, what)
    if number is None or number <= 0:  # -1: not allocated yet, 0: disabled
        return None
    if number > 65535:
        raise DomainXmlError(f"domain XML: {what} {number} is out of range")
    return number


def _split_opts(spec: str) -> tuple[str, dict[str, str]]:
    head, *rest = spec.split(",")
    options: dict[str, str] = {}
    for item in rest:
        key, _, value = item.partition("=")
        options[key] = value
    return head, options


def _qmp_from_commandline(args: list[str]) -> tuple[Address, ...]:
    found: list[Address] = []
    chardevs: dict[str, Address] = {}
    monitors: list[str] = []
    for flag, value in itertools.pairwise(args):
        if flag == "-qmp":
            head, options = _split_opts(value)
            if head.startswith("unix:"):
                found.append(Address.unix(head[5:]))
            elif head.startswith("tcp:"):
                host, _, port = head[4:].rpartition(":")
                number = _port(port, "-qmp tcp port")
                if number is not None:
                    found.append(Address.tcp(host or "127.0.0.1", number))
            elif head == "unix" and "path" in options:
                found.append(Address.unix(options["path"]))
        elif flag == "-chardev":
            head, options = _split_opts(value)
            if head == "socket" and "id" in options:
                if "path" in options:
                    chardevs[options["id"]] = Address.unix(options["path"])
                elif "port" in options:
                    number = _port(options["port"], "-chardev port")
                    if number is not None:
                        host = options.get("host") or "127.0.0.1"
                        chardevs[options["id"]] = Address.tcp(host, number)
        elif flag == "-mon":
            _, options = _split_opts(f"mon,{value}")
            if options.get("mode", "readline") == "control" and "chardev" in options:
                monitors.append(options["chardev"])
    found.extend(chardevs[m] for m in monitors if m in chardevs)
    return tuple(found)


def _spice(devices: ET.Element | None) -> SpiceInfo | None:
    if devices is None:
        return None
    for graphics in devices.findall("graphics"):
        if graphics.get("type") != "spice":
            continue
        address = graphics.get("listen")
        socket = None
        for listen in graphics.findall("listen"):
            kind = listen.get("type")
            if kind == "address" and listen.get("address"):
                address = listen.get("address")
            elif kind == "socket" and listen.get("socket"):
                socket, address = listen.get("socket"), None
        return SpiceInfo(
            address=address,
            port=_port(graphics.get("port"), "spice port"),
            tls_port=_port(graphics.get("tlsPort"), "spice tlsPort"),
            socket=socket,
            autoport=graphics.get("autoport") == "yes",
        )
    return None


def _channels(devices: ET.Element | None) -> tuple[ChannelInfo, ...]:
    if devices is None:
        return ()
    out = []
    for channel in devices.findall("channel"):
        target = channel.find("target")
        if target is None or target.get("type") != "virtio" or not target.get("name"):
            continue
        source = channel.find("source")
        kind = channel.get("type", "")
        path = source.get("path") if source is not None else None
        if path is None and kind == "pty":
            path = channel.get("tty")
        alias = channel.find("alias")
        out.append(
            ChannelInfo(
                name=target.get("name", ""),
                type=kind,
                path=path,
                alias=alias.get("name") if alias is not None else None,
                state=target.get("state"),
            )
        )
    return tuple(out)


def parse_domain_xml(text: str | bytes) -> DomainXml:
    """Parse a domain XML (``virDomainGetXMLDesc``) into :class:`DomainXml`.

    Raises:
        DomainXmlError: not well-formed XML, not a ``<domain>``, no ``<name>``, or a port or id
            that is not a number.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise DomainXmlError(f"domain XML is not well-formed: {exc}") from None
    if root.tag != "domain":
        raise DomainXmlError(f"domain XML: root element is <{root.tag}>, not <domain>")
    name = (root.findtext("name") or "").strip()
    if not name:
        raise DomainXmlError("domain XML has no <name>")
    domain_id = _int(root.get("id"), "domain id")
    devices = root.find("devices")
    args = [
        arg.get("value", "")
        for commandline in root.findall(f"{{{QEMU_NS}}}commandline")
        for arg in commandline.findall(f"{{{QEMU_NS}}}arg")
    ]
    return DomainXml(
        name=name,
        uuid=(root.findtext("uuid") or "").strip() or None,
        id=domain_id if domain_id is not None and domain_id >= 0 else None,
        type=root.get("type", ""),
        qmp_sockets=_qmp_from_commandline(args),
        spice=_spice(devices),
        channels=_channels(devices),
    )
