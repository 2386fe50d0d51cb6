"""libvirt URI parsing: every accepted form, a clear error for each bad one, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.libvirt import LibvirtUri, LibvirtUriError, parse_libvirt_uri
from virtrio.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "qemu+ssh://root@192.168.1.10:22/system",
            LibvirtUri("qemu", "ssh", "/system", "192.168.1.10", "root", 22),
        ),
        ("qemu+ssh://host1/system", LibvirtUri("qemu", "ssh", "/system", "host1")),
        ("192.168.1.10", LibvirtUri("qemu", "ssh", "/system", "192.168.1.10")),
        ("admin@kvm-3:2222", LibvirtUri("qemu", "ssh", "/system", "kvm-3", "admin", 2222)),
        ("qemu+tcp://192.168.1.10/system", LibvirtUri("qemu", "tcp", "/system", "192.168.1.10")),
        (
            "qemu+tcp://192.168.1.10:16509/system",
            LibvirtUri("qemu", "tcp", "/system", "192.168.1.10", port=16509),
        ),
        ("qemu+tls://h.example/system", LibvirtUri("qemu", "tls", "/system", "h.example")),
        (
            "qemu+tls://[::1]:16514/system",
            LibvirtUri("qemu", "tls", "/system", "[::1]", port=16514),
        ),
        ("qemu:///system", LibvirtUri("qemu", None, "/system")),
        ("qemu:///session", LibvirtUri("qemu", None, "/session")),
        ("test:///default", LibvirtUri("test", None, "/default")),
        ("test:///tmp/node.xml", LibvirtUri("test", None, "/tmp/node.xml")),
        (
            "qemu+unix:///session?socket=/tmp/x/libvirt-sock",
            LibvirtUri("qemu", "unix", "/session", params=(("socket", "/tmp/x/libvirt-sock"),)),
        ),
        (
            "qemu+ssh://root@h/system?keyfile=/root/.ssh/id&no_verify=1",
            LibvirtUri(
                "qemu",
                "ssh",
                "/system",
                "h",
                "root",
                params=(("keyfile", "/root/.ssh/id"), ("no_verify", "1")),
            ),
        ),
    ],
)
def test_accepted_forms(text: str, expected: LibvirtUri) -> None:
    parsed = parse_libvirt_uri(text)
    assert parsed == expected
    assert parse_libvirt_uri(str(parsed)) == parsed
    assert parsed.is_remote == (expected.host is not None)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" qemu:///system", "whitespace"),
        ("qemu:///sys tem", "whitespace"),
        ("xen:///system", "unsupported driver 'xen'"),
        ("qemu+foo://h/system", "unknown transport 'foo'"),
        ("qemu+ssh:///system", "needs a host"),
        ("qemu+tcp:///system", "needs a host"),
        ("qemu+tls://h:0/system", "not in 1..65535"),
        ("qemu+tcp://h:99999/system", "not in 1..65535"),
        ("qemu+tcp://h:abc/system", "not in 1..65535"),
        ("qemu+tcp://root@h/system", "only meaningful over SSH"),
        ("qemu+ssh://h/", "is not /system or /session"),
        ("qemu+ssh://h", "is not /system or /session"),
        ("qemu:///sytem", "is not /system or /session"),
        ("test://h/default", "in-process"),
        ("test://", "needs /default"),
        ("qemu+unix://h/system", "local"),
        ("qemu:///system?sokcet=/x", "unknown parameter 'sokcet'"),
        ("qemu:///system#frag", "fragment"),
        ("qemu+ssh://bad_host!/system", "invalid host"),
        ("qemu+ssh://[::1/system", "unclosed"),
        ("qemu+ssh://us er@h/system", "whitespace"),
        ("qemu+ssh://@h/system", "invalid user"),
        ("just/a/path", "not of the form"),
    ],
)
def test_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(LibvirtUriError, match="invalid libvirt URI") as info:
        parse_libvirt_uri(text)
    assert reason in info.value.reason
    assert "accepted:" in str(info.value)
    assert isinstance(info.value, ConfigError)


hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)


@given(
    transport=st.sampled_from(["ssh", "tcp", "tls"]),
    host=hosts,
    user=st.none() | st.from_regex(r"[a-z_][a-z0-9_.-]{0,8}", fullmatch=True),
    port=st.none() | st.integers(1, 65535),
    path=st.sampled_from(["/system", "/session"]),
    params=st.lists(
        st.tuples(st.sampled_from(["keyfile", "no_verify", "socket", "name"]), st.text(max_size=8)),
        max_size=3,
    ),
)
def test_remote_round_trip(
    transport: str,
    host: str,
    user: str | None,
    port: int | None,
    path: str,
    params: list[tuple[str, str]],
) -> None:
    uri = LibvirtUri(
        "qemu", transport, path, host, user if transport == "ssh" else None, port, tuple(params)
    )
    assert parse_libvirt_uri(str(uri)) == uri


@given(st.text(max_size=60))
def test_garbage_raises_only_the_uri_error(text: str) -> None:
    try:
        parsed = parse_libvirt_uri(text)
    except LibvirtUriError:
        return
    assert parse_libvirt_uri(str(parsed)) == parsed
