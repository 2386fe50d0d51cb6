"""Addresses as URLs and opening streams and listeners from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from hypothesis import given, strategies as st

from virtrio.channels import (
    VMADDR_CID_ANY,
    VMADDR_CID_HOST,
    Address,
    open_listeners,
    open_stream,
    parse_address,
)
from virtrio.errors import ConfigError, ConnectError

addresses = st.one_of(
    st.builds(
        Address.unix,
        st.text(st.characters(blacklist_characters="\x00"), min_size=1).map(lambda s: "/" + s),
    ),
    st.builds(
        Address.tcp,
        st.sampled_from(["127.0.0.1", "localhost", "::1", "example.org"]),
        st.integers(0, 65535),
    ),
    st.builds(Address.vsock, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
)


@given(addresses)
def test_str_parse_round_trip(address: Address) -> None:
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/qmp.sock", Address.unix("/run/qmp.sock")),
        ("unix:///run/qmp.sock", Address.unix("/run/qmp.sock")),
        ("unix:relative.sock", Address.unix("relative.sock")),
        ("tcp://127.0.0.1:4444", Address.tcp("127.0.0.1", 4444)),
        ("tcp://[::1]:80", Address.tcp("::1", 80)),
        ("vsock://3:1024", Address.vsock(3, 1024)),
        ("vsock://host:1024", Address.vsock(VMADDR_CID_HOST, 1024)),
        ("vsock://any:5", Address.vsock(VMADDR_CID_ANY, 5)),
        ("ws://127.0.0.1:5959/spice", Address("ws", host="127.0.0.1", port=5959, path="/spice")),
        ("ws://h:1", Address("ws", host="h", port=1, path="/")),
    ],
)
def test_parse(text: str, expected: Address) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("/run/qmp.sock", "expected unix:/path"),
        ("unix:", "empty socket path"),
        ("tcp://localhost", "expected host:port"),
        ("tcp://:80", "empty host"),
        ("tcp://h:99999", "not in 0..65535"),
        ("tcp://h:http", "not in 0..65535"),
        ("tcp://h:1/x", "no path"),
        ("tcp:h:1", r"expected tcp://"),
        ("vsock://3", "expected vsock://cid:port"),
        ("vsock://x:1", "cid 'x'"),
        ("vsock://3:-1", "not 32-bit"),
        ("tcp://[::1:80", r"\[ipv6\]:port"),
        ("http://h:1", "unknown scheme 'http'"),
    ],
)
def test_invalid_addresses_name_the_problem(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_address(text)
    assert repr(text) in str(info.value)


async def test_unix_stream_round_trip(tmp_path: Path) -> None:
    address = f"unix:{tmp_path / 's.sock'}"
    listeners = await open_listeners(address)
    async with trio.open_nursery() as nursery:

        async def echo(stream: trio.SocketStream) -> None:
            await stream.send_all(await stream.receive_some())

        nursery.start_soon(trio.serve_listeners, echo, listeners)
        async with await open_stream(address) as stream:
            await stream.send_all(b"ping")
            assert await stream.receive_some() == b"ping"
        nursery.cancel_scope.cancel()


async def test_tcp_listener_with_port_zero() -> None:
    listeners = await open_listeners("tcp://127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    async with await open_stream(f"tcp://127.0.0.1:{port}") as stream:
        assert stream.socket.getpeername()[1] == port
    for listener in listeners:
        await listener.aclose()


async def test_stale_unix_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    for _ in range(2):
        listeners = await open_listeners(f"unix:{path}")
        for listener in listeners:
            await listener.aclose()
    assert path.exists()


async def test_regular_file_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.write_text("data")
    with pytest.raises(ConnectError, match="cannot listen on unix:"):
        await open_listeners(f"unix:{path}")
    assert path.read_text() == "data"


async def test_connect_errors_name_the_address(tmp_path: Path) -> None:
    missing = f"unix:{tmp_path / 'missing.sock'}"
    with pytest.raises(ConnectError, match=r"cannot connect to unix:.*missing.sock") as info:
        await open_stream(missing)
    assert info.value.address == missing
    listeners = await open_listeners("tcp://127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with pytest.raises(ConnectError, match=f"tcp://127.0.0.1:{port}"):
        await open_stream(f"tcp://127.0.0.1:{port}")


async def test_a_vsock_connect_error_names_the_address(autojump_clock: trio.abc.Clock) -> None:
    # a vsock peer that does not exist on this host: the kernel may hang or refuse; either way
    # the error names the address (the timeout itself: test_serving's vsock connect test)
    with pytest.raises(ConnectError, match="vsock://"):
        await open_stream("vsock://4000000:1", connect_timeout=0.5)


async def test_websocket_urls_are_for_the_websocket_layer() -> None:
    with pytest.raises(ConfigError, match="WebSocket"):
        await open_stream("ws://127.0.0.1:1/")


async def test_vsock_listener_binds_on_this_host() -> None:
    # VMADDR_PORT_ANY (2**32 - 1) asks the kernel for a free port
    listeners = await open_listeners(f"vsock://any:{2**32 - 1}")
    _cid, port = listeners[0].socket.getsockname()
    assert 0 < port < 2**32 - 1
    await listeners[0].aclose()
