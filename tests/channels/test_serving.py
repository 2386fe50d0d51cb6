"""serve_streams: listening with a connection limit on TCP, Unix and vsock."""

from __future__ import annotations

import fcntl
import socket
import sys
from pathlib import Path

import pytest
import trio

from virtrio.channels import VMADDR_CID_ANY, Address, open_stream, serve_streams
from virtrio.errors import ConfigError, ConnectError


@pytest.fixture(params=["tcp", "unix"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path}/s.sock"


async def echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def test_serves_and_reports_the_bound_address(address: str) -> None:
    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(serve_streams, address, echo)
        assert bound.scheme == address.split(":")[0]
        if bound.scheme == "tcp":
            assert bound.port != 0
        async with await open_stream(bound) as client:
            await client.send_all(b"ping")
            assert await client.receive_some(10) == b"ping"
        nursery.cancel_scope.cancel()


async def test_connection_limit_makes_clients_wait_their_turn(address: str) -> None:
    served: list[int] = []

    async def count(stream: trio.SocketStream) -> None:
        served.append(len(served))
        await stream.send_all(b"%d" % served[-1])
        await stream.receive_some(10)  # until the client closes

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(
            lambda task_status: serve_streams(
                address, count, max_connections=2, task_status=task_status
            )
        )
        clients = [await open_stream(bound) for _ in range(3)]
        assert await clients[0].receive_some(10) == b"0"
        assert await clients[1].receive_some(10) == b"1"
        # the third is connected (kernel backlog) but not served while two are
        with trio.move_on_after(0.3) as waited:
            await clients[2].receive_some(10)
        assert waited.cancelled_caught
        await clients[0].aclose()
        with trio.fail_after(5):
            assert await clients[2].receive_some(10) == b"2"
        for client in clients[1:]:
            await client.aclose()
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_does_not_stop_the_server(address: str) -> None:
    async def flaky(stream: trio.SocketStream) -> None:
        data = await stream.receive_some(10)
        if data == b"bad":
            raise ConnectError("handler failed", address="x")
        await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(serve_streams, address, flaky)
        async with await open_stream(bound) as bad:
            await bad.send_all(b"bad")
            assert await bad.receive_some(10) == b""
        async with await open_stream(bound) as good:
            await good.send_all(b"good")
            assert await good.receive_some(10) == b"good"
        nursery.cancel_scope.cancel()


async def test_invalid_limit_and_busy_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_connections must be at least 1"):
        await serve_streams("tcp://127.0.0.1:0", echo, max_connections=0)
    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(serve_streams, "tcp://127.0.0.1:0", echo)
        with pytest.raises(ConnectError, match=r"cannot listen on tcp://127\.0\.0\.1"):
            await serve_streams(bound, echo)
        nursery.cancel_scope.cancel()


# -- vsock: this machine has /dev/vsock (local CID 3) but no loopback transport ---------------

needs_vsock = pytest.mark.skipif(
    not Path("/dev/vsock").exists(), reason="no /dev/vsock: vsock cannot be listened on here"
)


def local_cid() -> int:
    with open("/dev/vsock", "rb") as device:
        answer = fcntl.ioctl(device, 0x7B9, b"\0" * 4)  # IOCTL_VM_SOCKETS_GET_LOCAL_CID
    return int.from_bytes(answer, sys.byteorder)


@needs_vsock
async def test_vsock_listens_on_any_cid() -> None:
    port_any = socket.VMADDR_PORT_ANY  # vsock port 0 is a real port; "any" is 2**32-1
    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(serve_streams, Address.vsock(VMADDR_CID_ANY, port_any), echo)
        assert bound.scheme == "vsock"
        assert bound.cid == VMADDR_CID_ANY
        assert 0 < bound.port < port_any
        # a second listener on the same port is refused, with the address in the message
        with pytest.raises(ConnectError, match=f"cannot listen on vsock://4294967295:{bound.port}"):
            await serve_streams(bound, echo)
        # our own CID has no loopback transport here: the kernel says ENODEV at once
        cid = local_cid()
        with pytest.raises(ConnectError, match=f"cannot connect to vsock://{cid}:{bound.port}"):
            await open_stream(Address.vsock(cid, bound.port), connect_timeout=5)
        nursery.cancel_scope.cancel()


@needs_vsock
async def test_vsock_connect_times_out_with_a_clear_error() -> None:
    # CID 1 (VMADDR_CID_LOCAL) needs the vsock_loopback module: the connect never completes
    with pytest.raises(ConnectError, match=r"connecting to vsock://1:1234 timed out after 0\.2 s"):
        await open_stream("vsock://local:1234", connect_timeout=0.2)


@needs_vsock
async def test_vsock_cannot_bind_a_foreign_cid() -> None:
    with pytest.raises(ConnectError, match="cannot listen on vsock://77:1234"):
        await serve_streams("vsock://77:1234", echo)
