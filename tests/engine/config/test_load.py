"""Fleet files: every problem reported at once with file:line and field path; round trips."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from virtrio.engine.config import (
    ChannelConfig,
    Defaults,
    Fleet,
    FleetError,
    FleetIssue,
    HostConfig,
    QemuConfig,
    SpiceConfig,
    SpiceVmConfig,
    VmConfig,
    default_fleet,
    dump_fleet,
    fleet_data,
    load_fleet,
    parse_fleet,
)
from virtrio.errors import ConfigError
from virtrio.nurseries import MuxOptions, QgaOptions, QmpOptions, SerialConsoleOptions

EXAMPLE = """\
defaults:
  connect_timeout: 5
  backoff_max: 10
hosts:
  - id: host1
    uri: qemu+ssh://root@10.0.0.5/system
vms:
  - id: web1
    host: host1
    tags: [web, prod]
    channels:
      qmp: {kind: qmp}
      qga: {kind: qga}
      console: {kind: serial-console, retention: 65536}
  - id: demo1
    qemu: {template: demo}
spice:
  vms:
    - {vm_id: web1, server_addr: 10.0.0.5, port: 5900, password: pw}
"""


def test_an_example_fleet_loads(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(EXAMPLE)
    fleet = load_fleet(path)
    assert fleet.defaults == Defaults(connect_timeout=5.0, backoff_max=10.0)
    assert fleet.hosts == (HostConfig("host1", "qemu+ssh://root@10.0.0.5/system"),)
    web = fleet.vm("web1")
    assert web.tags == ("web", "prod")
    assert web.channels["console"] == ChannelConfig(
        "serial-console", SerialConsoleOptions(retention=65536)
    )
    assert fleet.vm("demo1").qemu == QemuConfig(template="demo")
    assert fleet.spice.vms[0] == SpiceVmConfig("web1", "10.0.0.5", 5900, password="pw")
    assert fleet.source == str(path)


def test_every_problem_is_reported_at_once_with_line_and_path() -> None:
    text = textwrap.dedent("""\
        hosts:
          - id: h1
            uri: qemu:///system
        vms:
          - id: a
            qemu: {template: demo}
            channels:
              console: {kind: serail}
              q: {kind: qmp, address: bogus}
          - id: a
            host: h2
            tags: [x, 3]
            memory: 5
          - id: c
            qemu: {template: demo, memory_mib: big}
            channels:
              m: {kind: mux, protocol: udp, client: "no"}
          - id: d
            qemu: {template: tiny}
    """)
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="fleet.yaml")
    assert str(caught.value).splitlines() == [
        "fleet.yaml:8: vms[0].channels.console.kind: unknown channel kind 'serail' "
        "(known: mux, qga, qmp, serial-console, spice, virtio-serial; a third-party kind is "
        "installed as a distribution registering it under the entry-point group "
        "'virtrio.channels')",
        "fleet.yaml:9: vms[0].channels.q.address: invalid address 'bogus': expected unix:/path, "
        "tcp://host:port, vsock://cid:port or ws://host:port/path",
        "fleet.yaml:10: vms[1].id: duplicate VM id 'a'",
        "fleet.yaml:11: vms[1].host: unknown host 'h2' (hosts: h1)",
        "fleet.yaml:12: vms[1].tags[1]: expected a string, got 3",
        "fleet.yaml:13: vms[1].memory: unknown field (known: channels, domain, host, id, qemu, "
        "tags)",
        "fleet.yaml:15: vms[2].qemu.memory_mib: expected an integer, got 'big'",
        "fleet.yaml:17: vms[2].channels.m.client: expected true or false, got 'no'",
        "fleet.yaml:17: vms[2].channels.m.protocol: expected one of 'yamux', 'xtransport', got"
        " 'udp'",
        "fleet.yaml:19: vms[3].qemu.template: unknown template 'tiny' (known: demo)",
    ]
    assert len(caught.value.issues) == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vms: [", "<f>:1: YAML: expected the node content"),
        ("- a\n- b\n", "<f>:1: a fleet is a map"),
        ("vms:\n  - id: x\n", "<f>:2: vms[0]: give a host (with domain), a qemu to launch"),
        (
            "hosts: [{id: h, uri: u}]\nvms:\n  - {id: x, host: h, qemu: {template: demo}}\n",
            "<f>:3: vms[0]: give either host (with domain) or qemu, not both",
        ),
        ("vms:\n  - qemu: {template: demo}\n", "<f>:2: vms[0].id: required field missing"),
        ("hosts:\n  - {id: h, uri: u}\n  - {id: h, uri: v}\n", "<f>:3: hosts[1].id: duplicate"),
        (
            "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n      c: {address: x}\n",
            "<f>:5: vms[0].channels.c: missing 'kind'",
        ),
        ("defaults:\n  call_timeout: soon\n", "<f>:2: defaults.call_timeout: expected a number"),
    ],
)
def test_specific_errors(text: str, message: str) -> None:
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="<f>")
    assert str(caught.value).startswith(message)


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the fleet file"):
        load_fleet(tmp_path / "missing.yaml")


def test_the_default_fleet() -> None:
    fleet = default_fleet(vms=3)
    assert [vm.id for vm in fleet.vms] == ["demo1", "demo2", "demo3"]
    assert set(fleet.vms[0].channels) == {"qmp", "qga", "console", "mux0"}
    assert fleet.vms[0].channels["mux0"].options == MuxOptions(port="org.virtrio.mux0")
    assert parse_fleet(dump_fleet(fleet)) == fleet


XTRANSPORT_MUX = """\
vms:
  - id: a
    qemu: {template: demo}
    channels:
      x:
        kind: mux
        protocol: xtransport
        address: vsock://3:5000
        frame_size: 1024
        ack: true
"""


def test_an_xtransport_mux_channel() -> None:
    fleet = parse_fleet(XTRANSPORT_MUX)
    assert fleet.vm("a").channels["x"] == ChannelConfig(
        "mux", MuxOptions("vsock://3:5000", protocol="xtransport", frame_size=1024, ack=True)
    )
    assert parse_fleet(dump_fleet(fleet)) == fleet


def test_bad_xtransport_mux_options_are_reported_at_their_lines() -> None:
    def channel(lines: str) -> str:
        return "vms:\n  - id: a\n    qemu: {template: demo}\n    channels:\n" + lines

    text = channel(
        "      x:\n"
        "        kind: mux\n"
        "        protocol: xtransport\n"
        "        address: tcp://127.0.0.1:5000\n"
        "        frame_size: 16\n"
        "        ack: maybe\n"
        "      y: {kind: mux, protocol: xtransport, address: unix:/y.sock, frame_size: big}\n"
        "      z: {kind: mux, protocol: xtransport, address: tcp://h:1, frame_size: 65552}\n"
    )
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="fleet.yaml")
    assert str(caught.value).splitlines() == [
        "fleet.yaml:9: vms[0].channels.x.frame_size: frame_size 16 is out of range: 17..65551"
        " (the 16-byte packet header included)",
        "fleet.yaml:10: vms[0].channels.x.ack: expected true or false, got 'maybe'",
        "fleet.yaml:11: vms[0].channels.y.frame_size: expected an integer, got 'big'",
        "fleet.yaml:12: vms[0].channels.z.frame_size: frame_size 65552 is out of range:"
        " 17..65551 (the 16-byte packet header included)",
    ]
    for lines, message in [
        ("      m: {kind: mux, port: p, ack: true}\n", "ack: an xtransport option"),
        ("      m: {kind: mux, frame_size: 512}\n", "frame_size: an xtransport option"),
        (
            "      m: {kind: mux, protocol: xtransport, address: 'tcp://h:1', client: false}\n",
            "client: false is for yamux",
        ),
    ]:
        with pytest.raises(FleetError) as caught:
            parse_fleet(channel(lines), source="fleet.yaml")
        assert str(caught.value).startswith("fleet.yaml:5: vms[0].channels.m: "), caught.value
        assert message in str(caught.value)


# -- hypothesis: round trips and mutations ---------------------------------------------------

ident = st.from_regex(r"[a-z][a-z0-9-]{0,6}", fullmatch=True)
address = st.one_of(st.none(), st.builds(lambda n: f"unix:/run/{n}.sock", ident))
channels = st.dictionaries(
    ident,
    st.one_of(
        st.builds(lambda a: ChannelConfig("qmp", QmpOptions(address=a)), address),
        st.builds(
            lambda a, v: ChannelConfig("qga", QgaOptions(address=a, via=v)),
            address,
            st.sampled_from([None, "socket", "libvirt"]),
        ),
        st.builds(
            lambda a, r: ChannelConfig("serial-console", SerialConsoleOptions(a, retention=r)),
            address,
            st.integers(1, 1 << 24),
        ),
        st.builds(
            lambda p, c: ChannelConfig("mux", MuxOptions(port=p, client=c)),
            st.one_of(st.none(), ident),
            st.booleans(),
        ),
        st.builds(
            lambda a, f, k: ChannelConfig(
                "mux", MuxOptions(a, protocol="xtransport", frame_size=f, ack=k)
            ),
            st.builds(lambda n: f"unix:/run/{n}.sock", ident),
            st.one_of(st.none(), st.integers(17, 65551)),
            st.one_of(st.none(), st.booleans()),
        ),
    ),
    max_size=3,
)


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    host_ids = draw(st.lists(ident, unique=True, max_size=2))
    hosts = tuple(
        HostConfig(h, draw(st.sampled_from(["qemu:///system", "test:///default"])))
        for h in host_ids
    )
    vm_ids = draw(st.lists(ident, unique=True, max_size=4))
    vms = []
    for vm_id in vm_ids:
        if host_ids and draw(st.booleans()):
            where: dict[str, Any] = {"host": draw(st.sampled_from(host_ids))}
        else:
            qemu = draw(
                st.one_of(
                    st.just(QemuConfig(template="demo")),
                    st.builds(
                        lambda m, p: QemuConfig(machine="none", memory_mib=m, ports=tuple(p)),
                        st.integers(16, 4096),
                        st.lists(ident, max_size=2),
                    ),
                )
            )
            where = {"qemu": qemu}
        tags = tuple(draw(st.lists(ident, max_size=3)))
        vms.append(VmConfig(vm_id, tags=tags, channels=draw(channels), **where))
    spice = SpiceConfig(
        tuple(
            SpiceVmConfig(v, "127.0.0.1", draw(st.integers(1, 65535)), tls=draw(st.booleans()))
            for v in draw(st.lists(st.sampled_from(vm_ids), unique=True, max_size=2))
        )
        if vm_ids
        else ()
    )
    defaults = Defaults(
        connect_timeout=draw(st.floats(0.1, 100)), backoff_max=draw(st.integers(1, 600)) * 1.0
    )
    return Fleet(hosts, tuple(vms), spice, defaults)


@given(fleets())
def test_a_valid_fleet_round_trips(fleet: Fleet) -> None:
    assert parse_fleet(dump_fleet(fleet)) == fleet


def leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in leaves(v, (*path, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in leaves(v, (*path, i))]
    return [path]


def format_path(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@given(fleets(), st.data())
def test_a_mutated_fleet_names_the_line_and_path_of_the_mutation(
    fleet: Fleet, data: st.DataObject
) -> None:
    """Any scalar replaced by a map is an error at exactly that field's line and path."""
    tree = fleet_data(fleet)
    paths = leaves(tree)
    if not paths:
        return
    path = data.draw(st.sampled_from(paths))
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = {"oops_marker": [1]}
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.default_flow_style = False
    import io

    out = io.StringIO()
    yaml.dump(tree, out)
    text = out.getvalue()
    marker_line = next(i for i, line in enumerate(text.splitlines(), 1) if "oops_marker" in line)
    with pytest.raises(FleetError) as caught:
        parse_fleet(text, source="m.yaml")
    where = {(i.line, i.path) for i in caught.value.issues}
    # a list item starts on the marker's line; a key sits on the line above its block value
    line = marker_line if isinstance(path[-1], int) else marker_line - 1
    assert (line, format_path(path)) in where, (text, caught.value.issues)


@given(st.text(max_size=200))
def test_garbage_is_an_error_never_a_crash(text: str) -> None:
    issues: list[FleetIssue] = []
    try:
        parse_fleet(text)
    except FleetError as exc:
        issues = exc.issues
        assert issues
    assert all(i.line >= 1 for i in issues)


def test_errors_serialise_for_tools() -> None:
    with pytest.raises(FleetError) as caught:
        parse_fleet("vms: 3\n", source="x.yaml")
    issue = caught.value.issues[0]
    assert json.loads(json.dumps([issue.file, issue.line, issue.path])) == ["x.yaml", 1, "vms"]
