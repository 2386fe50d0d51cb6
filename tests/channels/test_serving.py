"""serve_streams and StreamServer: a connection limit that refuses, a handler's failure kept to
its connection, accept out of descriptors, graceful shutdown; on TCP, Unix and vsock."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import resource
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from virtrio.channels import (
    VMADDR_CID_ANY,
    Address,
    ServerStatistics,
    StreamServer,
    open_stream,
    serve_streams,
)
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


async def test_clients_over_the_limit_are_refused_with_the_reason(address: str) -> None:
    async def hold(stream: trio.SocketStream) -> None:
        await stream.send_all(b"served")
        await stream.receive_some(10)  # until the client closes

    async def refuse(stream: trio.SocketStream, reason: str) -> None:
        await stream.send_all(reason.encode())

    server: StreamServer[trio.SocketStream] = StreamServer(
        hold, max_connections=2, refuse=refuse, name="test server"
    )
    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(server.serve, address)
        clients = [await open_stream(bound) for _ in range(2)]
        for client in clients:
            assert await client.receive_some(10) == b"served"
        async with await open_stream(bound) as third:
            with trio.fail_after(5):
                said = await read_all(third)
        assert said == b"test server already serves its maximum of 2 connections"
        assert server.statistics() == ServerStatistics(
            active=2, accepted=2, refused=1, failed=0, accept_errors=0
        )
        await clients[0].aclose()
        await wait_for(lambda: server.statistics().active == 1)
        async with await open_stream(bound) as fourth:  # a freed place is taken again
            assert await fourth.receive_some(10) == b"served"
        await clients[1].aclose()
        nursery.cancel_scope.cancel()


async def read_all(stream: trio.abc.ReceiveStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(4096):
        data += chunk
    return data


async def wait_for(condition: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.testing.wait_all_tasks_blocked()


async def test_a_handler_bug_costs_only_its_own_connection(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def buggy(stream: trio.SocketStream) -> None:
        data = await stream.receive_some(10)
        if data == b"bug":
            raise KeyError("a bug in the handler")
        await stream.send_all(data)
        await stream.send_all(await stream.receive_some(10))

    server: StreamServer[trio.SocketStream] = StreamServer(buggy)
    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(server.serve, address)
        async with await open_stream(bound) as good:
            await good.send_all(b"one")
            assert await good.receive_some(10) == b"one"
            async with await open_stream(bound) as bad:
                await bad.send_all(b"bug")
                assert await bad.receive_some(10) == b""  # closed
            await good.send_all(b"two")  # the other connection, open all along, goes on
            assert await good.receive_some(10) == b"two"
        assert server.statistics().failed == 1
        assert "a connection handler failed" in caplog.text
        assert "KeyError: 'a bug in the handler'" in caplog.text
        nursery.cancel_scope.cancel()


async def test_graceful_shutdown_stops_accepting_and_lets_handlers_finish(address: str) -> None:
    release = trio.Event()
    finished: list[str] = []

    async def slow(stream: trio.SocketStream) -> None:
        await stream.send_all(b"working")
        await release.wait()
        await stream.send_all(b"done")
        finished.append("slow")

    async def stuck(stream: trio.SocketStream) -> None:
        try:
            await stream.send_all(b"working")
            await trio.sleep_forever()
        finally:
            finished.append("stuck cancelled")

    handlers = iter([slow, stuck])

    async def handler(stream: trio.SocketStream) -> None:
        await next(handlers)(stream)

    server: StreamServer[trio.SocketStream] = StreamServer(handler, grace=1.0)
    serving = trio.CancelScope()
    stopped = trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[Address]]) -> None:
        with serving:
            await server.serve(address, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        [bound] = await nursery.start(run)
        first = await open_stream(bound)
        assert await first.receive_some(10) == b"working"
        second = await open_stream(bound)
        assert await second.receive_some(10) == b"working"
        serving.cancel()
        await trio.testing.wait_all_tasks_blocked()
        # no longer accepting: a new client is refused by the kernel
        with pytest.raises(ConnectError):
            await open_stream(bound, connect_timeout=5)
        assert not stopped.is_set()
        release.set()  # the slow handler finishes within its grace
        assert await first.receive_some(10) == b"done"
        with trio.fail_after(5):
            await stopped.wait()
    # the stuck one was cancelled once the grace was over
    assert finished == ["slow", "stuck cancelled"]
    assert server.statistics().active == 0
    await first.aclose()
    await second.aclose()


async def test_accept_out_of_descriptors_is_logged_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # EMFILE for real: the soft descriptor limit lowered to what is open now, so the server's
    # accept() cannot get one; once descriptors are free again it serves the waiting client
    logged = trio.Event()

    class Notify(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "EMFILE" in record.getMessage():
                logged.set()

    notify = Notify()
    logging.getLogger("virtrio.channels._serving").addHandler(notify)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server: StreamServer[trio.SocketStream] = StreamServer(echo)
    fillers: list[int] = []
    try:
        async with trio.open_nursery() as nursery:
            [bound] = await nursery.start(server.serve, "tcp://127.0.0.1:0")
            client = trio.socket.socket()
            limit = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 64
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
            with pytest.raises(OSError, match="Too many open files") as full:  # noqa: PT012
                while True:
                    fillers.append(os.open("/dev/null", os.O_RDONLY))
            assert full.value.errno == errno.EMFILE
            await client.connect((bound.host, bound.port))  # done by the kernel's backlog
            with trio.fail_after(10):
                await logged.wait()
            assert server.statistics().accept_errors >= 1
            for fd in fillers:
                os.close(fd)
            fillers.clear()
            stream = trio.SocketStream(client)
            with trio.fail_after(10):
                await stream.send_all(b"still serving")
                assert await stream.receive_some(20) == b"still serving"
            await stream.aclose()
            nursery.cancel_scope.cancel()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        logging.getLogger("virtrio.channels._serving").removeHandler(notify)
    assert "accept failed with EMFILE (Too many open files)" in caplog.text


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
