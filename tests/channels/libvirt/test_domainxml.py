"""Domain XML discovery as a pure function: a real libvirt XML, generated XML, garbage."""

from __future__ import annotations

import contextlib
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, strategies as st

from virtrio.channels._addresses import Address
from virtrio.channels.libvirt import ChannelInfo, DomainXmlError, SpiceInfo, parse_domain_xml

#: trimmed from `virsh dumpxml` of the demo guest running under libvirt 9.0
LIVE = """<domain type='qemu' id='3' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>a-rather-long-domain-name-here</name>
  <uuid>1e0d1c58-84ed-4e5d-8644-a4f4086b0157</uuid>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-x/org.qemu.ga'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
      <alias name='channel0'/>
      <address type='virtio-serial' controller='0' bus='0' port='1'/>
    </channel>
    <channel type='pty'>
      <source path='/dev/pts/1'/>
      <target type='virtio' name='org.virtrio.echo1' state='disconnected'/>
      <alias name='channel2'/>
    </channel>
    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0'/>
    </channel>
    <channel type='unix'><target type='guestfwd' address='10.0.2.1' port='4600'/></channel>
    <graphics type='spice' port='5901' tlsPort='5902' autoport='yes' listen='0.0.0.0'>
      <listen type='address' address='127.0.0.1'/>
      <image compression='off'/>
    </graphics>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-qmp'/><qemu:arg value='unix:/run/extra-qmp.sock,server=on,wait=off'/>
    <qemu:arg value='-chardev'/>
    <qemu:arg value='socket,id=mon9,host=127.0.0.1,port=4444,server=on'/>
    <qemu:arg value='-mon'/><qemu:arg value='chardev=mon9,mode=control'/>
    <qemu:arg value='-chardev'/><qemu:arg value='socket,id=hmp,path=/run/hmp.sock,server=on'/>
    <qemu:arg value='-mon'/><qemu:arg value='chardev=hmp'/>
  </qemu:commandline>
</domain>"""


def test_live_xml() -> None:
    xml = parse_domain_xml(LIVE)
    assert (xml.name, xml.id, xml.type) == ("a-rather-long-domain-name-here", 3, "qemu")
    assert xml.uuid == "1e0d1c58-84ed-4e5d-8644-a4f4086b0157"
    assert [c.name for c in xml.channels] == [
        "org.qemu.guest_agent.0",
        "org.virtrio.echo1",
        "com.redhat.spice.0",
    ]
    agent = xml.channel("org.qemu.guest_agent.0")
    assert agent.state == "connected"
    assert agent.alias == "channel0"
    assert agent.address == Address.unix(agent.path or "")
    assert xml.channel("channel2").path == "/dev/pts/1"  # by alias too
    assert xml.channel("org.virtrio.echo1").address is None  # a pty has no socket
    assert xml.spice == SpiceInfo("127.0.0.1", 5901, 5902, None, True)
    assert xml.spice.uri == "spice://127.0.0.1:5901"
    # -qmp, and -chardev + -mon mode=control; a readline monitor is not QMP
    assert xml.qmp_sockets == (Address.unix("/run/extra-qmp.sock"), Address.tcp("127.0.0.1", 4444))
    assert xml.libvirt_monitor_socket() == (
        "/var/lib/libvirt/qemu/domain-3-a-rather-long-domain/monitor.sock"
    )
    with pytest.raises(KeyError, match=r"no channel 'nope'.*org\.qemu\.guest_agent\.0"):
        xml.channel("nope")


def test_inactive_domain_has_no_id_or_ports() -> None:
    xml = parse_domain_xml(
        "<domain type='kvm'><name>off</name><devices>"
        "<graphics type='spice' port='-1' autoport='yes'/>"
        "<graphics type='vnc' port='5900'/></devices></domain>"
    )
    assert xml.id is None
    assert xml.libvirt_monitor_socket() is None
    assert xml.spice == SpiceInfo(None, None, None, None, True)
    assert xml.spice.uri is None
    unix = parse_domain_xml(
        "<domain><name>s</name><devices><graphics type='spice'>"
        "<listen type='socket' socket='/run/spice.sock'/></graphics></devices></domain>"
    )
    assert unix.spice == SpiceInfo(None, None, None, "/run/spice.sock")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not well-formed"),
        ("<domain>", "not well-formed"),
        ("<network><name>x</name></network>", "not <domain>"),
        ("<domain><uuid>u</uuid></domain>", "no <name>"),
        ("<domain id='x'><name>a</name></domain>", "domain id is 'x'"),
        (
            "<domain><name>a</name><devices><graphics type='spice' port='59o0'/></devices>"
            "</domain>",
            "spice port",
        ),
        (
            "<domain><name>a</name><devices><graphics type='spice' tlsPort='70000'/></devices>"
            "</domain>",
            "out of range",
        ),
    ],
)
def test_bad_xml_raises_a_specific_error(text: str, message: str) -> None:
    with pytest.raises(DomainXmlError, match=message):
        parse_domain_xml(text)


names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,30}", fullmatch=True)
paths = st.from_regex(r"/[a-z0-9/_.-]{1,40}", fullmatch=True)
channels = st.lists(
    st.builds(
        ChannelInfo,
        name=st.from_regex(r"[a-z][a-z0-9._]{0,20}", fullmatch=True),
        type=st.sampled_from(["unix", "pty"]),
        path=st.none() | paths,
        alias=st.none() | st.from_regex(r"channel[0-9]{1,2}", fullmatch=True),
        state=st.sampled_from([None, "connected", "disconnected"]),
    ),
    max_size=4,
    unique_by=lambda c: c.name,
)
spices = st.none() | st.builds(
    SpiceInfo,
    address=st.sampled_from(["127.0.0.1", "::1", "0.0.0.0"]),
    port=st.none() | st.integers(1, 65535),
    tls_port=st.none() | st.integers(1, 65535),
    autoport=st.booleans(),
)


def render(
    name: str,
    domain_id: int | None,
    chans: list[ChannelInfo],
    spice: SpiceInfo | None,
    qmp: list[str],
) -> str:
    parts = [
        f"<domain type='qemu'{'' if domain_id is None else f' id={quoteattr(str(domain_id))}'}"
    ]
    parts.append(" xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>")
    parts.append(f"<name>{name}</name><devices>")
    for c in chans:
        source = "" if c.path is None else f"<source mode='bind' path={quoteattr(c.path)}/>"
        state = "" if c.state is None else f" state='{c.state}'"
        alias = "" if c.alias is None else f"<alias name='{c.alias}'/>"
        parts.append(
            f"<channel type='{c.type}'>{source}<target type='virtio' name='{c.name}'{state}/>"
            f"{alias}</channel>"
        )
    if spice is not None:
        attrs = f" autoport='{'yes' if spice.autoport else 'no'}'"
        attrs += f" port='{spice.port if spice.port is not None else -1}'"
        if spice.tls_port is not None:
            attrs += f" tlsPort='{spice.tls_port}'"
        parts.append(
            f"<graphics type='spice'{attrs}><listen type='address' address='{spice.address}'/>"
            "</graphics>"
        )
    parts.append("</devices><qemu:commandline>")
    for path in qmp:
        parts.append(f"<qemu:arg value='-qmp'/><qemu:arg value='unix:{path},server=on'/>")
    parts.append("</qemu:commandline></domain>")
    return "".join(parts)


@given(names, st.none() | st.integers(0, 99999), channels, spices, st.lists(paths, max_size=2))
def test_generated_xml_round_trip(
    name: str,
    domain_id: int | None,
    chans: list[ChannelInfo],
    spice: SpiceInfo | None,
    qmp: list[str],
) -> None:
    xml = parse_domain_xml(render(name, domain_id, chans, spice, qmp))
    assert (xml.name, xml.id) == (name, domain_id)
    assert list(xml.channels) == chans
    assert xml.spice == spice
    assert xml.qmp_sockets == tuple(Address.unix(p) for p in qmp)


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_garbage_raises_only_domain_xml_error(text: str | bytes) -> None:
    with contextlib.suppress(DomainXmlError):
        parse_domain_xml(text)
