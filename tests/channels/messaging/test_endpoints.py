"""MessageClient and MessageServer over TCP and Unix through the same code path."""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from virtrio.channels import Address
from virtrio.channels.messaging import (
    ClientConfig,
    Compression,
    Encryption,
    MessageClient,
    MessageConnection,
    MessageServer,
    MiddlewareError,
    RateLimit,
    ServerConfig,
    Transport,
    with_yamux,
)
from virtrio.errors import ConfigError, ConnectError, ConnectionLostError, VirtrioTimeoutError

from .helpers import running


async def test_echo_round_trips(listen_address: str, transport: Transport) -> None:
    server = MessageServer(ServerConfig(listen_address), transport)
    async with running(server) as address:
        client = MessageClient(ClientConfig(address, call_timeout=10), transport)
        async with client.connect() as connection:
            assert connection.is_connected
            assert connection.transport == transport.name
            for size in (0, 1, 1008, 5000, 1 << 20):
                message = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
                await connection.send(message)
                assert await connection.receive() == message
            await connection.disconnect()
            assert not connection.is_connected


async def test_many_clients_at_once(listen_address: str, transport: Transport) -> None:
    server = MessageServer(ServerConfig(listen_address, max_connections=20), transport)
    async with running(server) as address:

        async def one(i: int) -> None:
            async with MessageClient(ClientConfig(address), transport).connect() as connection:
                for j in range(5):
                    await connection.send(b"%d-%d" % (i, j))
                    assert await connection.receive(timeout=10) == b"%d-%d" % (i, j)

        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i)


async def test_server_side_sees_the_client_disconnect(
    listen_address: str, transport: Transport
) -> None:
    seen: list[object] = []
    done = trio.Event()

    async def handler(connection: MessageConnection) -> None:
        seen.append(await connection.receive())
        try:
            await connection.receive()
        except ConnectionLostError as exc:
            seen.append(exc)
        seen.append(connection.is_connected)
        done.set()

    server = MessageServer(ServerConfig(listen_address), transport)
    async with running(server, handler) as address:
        async with MessageClient(ClientConfig(address), transport).connect() as connection:
            await connection.send(b"bye")
        with trio.fail_after(5):
            await done.wait()
    assert seen[0] == b"bye"
    assert isinstance(seen[1], ConnectionLostError)
    assert "disconnected" in str(seen[1])
    assert seen[2] is False


async def test_connection_limit_refuses_and_counts(
    listen_address: str, transport: Transport
) -> None:
    server = MessageServer(ServerConfig(listen_address, max_connections=1), transport)
    async with running(server) as address:
        client = MessageClient(ClientConfig(address), transport)
        async with client.connect() as first:
            await first.send(b"one")
            assert await first.receive(timeout=5) == b"one"
            with pytest.raises(ConnectionLostError):  # noqa: PT012 - refused at any step
                async with client.connect() as second:
                    await second.send(b"two")
                    await second.receive(timeout=5)
            assert server.statistics().refused == 1
            assert await first.send(b"still") is None  # the first one is untouched
            assert await first.receive(timeout=5) == b"still"
            await first.disconnect()
        with trio.fail_after(5):
            while server.statistics().active:
                await trio.testing.wait_all_tasks_blocked()
        async with client.connect() as third:  # the place is free again
            await third.send(b"three")
            assert await third.receive(timeout=5) == b"three"
        assert server.statistics().accepted == 2


async def test_receive_timeout_from_config() -> None:
    # real sockets, so a real (short) clock: autojump would also skip over socket waits
    async def silent(connection: MessageConnection) -> None:
        await trio.sleep_forever()

    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:0"))
    async with running(server, silent) as address:
        config = ClientConfig(address, call_timeout=0.2)
        async with MessageClient.with_xtransport(config).connect() as connection:
            start = trio.current_time()
            with pytest.raises(VirtrioTimeoutError, match=r"nothing in 0\.2 s"):
                await connection.receive()
            assert trio.current_time() - start >= 0.2
            with pytest.raises(VirtrioTimeoutError, match=r"nothing in 0\.05 s"):
                await connection.receive(timeout=0.05)


async def test_connect_errors_name_the_address(tmp_path: Path) -> None:
    client = MessageClient.with_xtransport(ClientConfig(f"unix:{tmp_path}/none.sock"))
    with pytest.raises(ConnectError, match=r"cannot connect to unix:.*none\.sock"):
        async with client.connect():
            pass


async def test_protocol_error_from_client_closes_only_that_connection(
    listen_address: str,
) -> None:
    from virtrio.channels import open_stream

    server = MessageServer.with_xtransport(ServerConfig(listen_address))
    async with running(server) as address:
        async with await open_stream(address) as raw:
            await raw.send_all(b"not xtransport at all")
            assert await raw.receive_some(10) == b""
        async with MessageClient.with_xtransport(ClientConfig(address)).connect() as connection:
            await connection.send(b"still serving")
            assert await connection.receive(timeout=5) == b"still serving"


def test_configs_validate() -> None:
    assert ClientConfig().address == Address.vsock(103, 1234)
    assert ServerConfig().address == Address.vsock(0xFFFFFFFF, 1234)
    assert ClientConfig.vsock(3, 99, connect_timeout=1).address == Address.vsock(3, 99)
    assert ServerConfig.vsock(port=5).address == Address.vsock(0xFFFFFFFF, 5)
    with pytest.raises(ConfigError, match="connect_timeout must be a positive"):
        ClientConfig(connect_timeout=0)
    with pytest.raises(ConfigError, match="call_timeout must be a positive"):
        ServerConfig(call_timeout=-1)
    with pytest.raises(ConfigError, match="max_connections must be at least 1"):
        ServerConfig(max_connections=0)
    with pytest.raises(ConfigError, match="not a vsock, tcp or unix address"):
        ClientConfig("ws://127.0.0.1:1/x")
    with pytest.raises(ConfigError, match="invalid address"):
        ClientConfig("tcp://nowhere")
    with pytest.raises(ConfigError, match="32-bit"):
        ClientConfig.vsock(2**32, 1)
    assert attrs.evolve(ServerConfig(), max_connections=3).max_connections == 3


async def test_yamux_uses_virgas_framing_on_one_stream(listen_address: str) -> None:
    """What virga (use-yamux) does as a client: one stream, 8-byte big-endian length + bytes."""
    from virtrio.channels import open_stream
    from virtrio.channels.yamux import open_mux

    server = MessageServer.with_yamux(ServerConfig(listen_address))
    async with running(server) as address:
        stream = await open_stream(address)
        async with open_mux(stream, client=True) as session:
            mux_stream = await session.open_stream()
            await mux_stream.send_all(bytes.fromhex("0000000000000005") + b"hello")
            got = b""
            while len(got) < 13:
                got += await mux_stream.receive_some(100)
            assert got == bytes.fromhex("0000000000000005") + b"hello"
            await mux_stream.send_eof()
            assert await mux_stream.receive_some(100) == b""


async def test_yamux_server_times_out_a_client_that_opens_no_stream() -> None:
    from virtrio.channels import open_stream

    server = MessageServer.with_yamux(ServerConfig("tcp://127.0.0.1:0", handshake_timeout=0.3))
    async with running(server) as address, await open_stream(address) as idle:
        # the server gives up on the silent client after handshake_timeout and hangs up
        with trio.fail_after(10):
            while await idle.receive_some(100):
                pass


KEY = bytes(range(32))


async def test_middleware_layers_work_end_to_end(listen_address: str, transport: Transport) -> None:
    layers = [Compression(), Encryption(KEY), RateLimit(256 * 1024 * 1024)]
    server = MessageServer(ServerConfig(listen_address), transport, middleware=layers)
    async with running(server) as address:
        client = MessageClient(
            ClientConfig(address, call_timeout=10, max_message_size=1 << 20),
            transport,
            middleware=layers,
        )
        async with client.connect() as connection:
            for message in (b"", b"x", b"compress me " * 10_000, os.urandom(1 << 20)):
                await connection.send(message)
                assert await connection.receive() == message


async def test_a_client_with_the_wrong_key_gets_nothing_through(listen_address: str) -> None:
    seen: list[BaseException] = []

    failed = trio.Event()

    async def handler(connection: MessageConnection) -> None:
        try:
            await connection.receive()
        except MiddlewareError as exc:
            seen.append(exc)
            failed.set()

    transport = with_yamux()
    server = MessageServer(ServerConfig(listen_address), transport, middleware=[Encryption(KEY)])
    async with running(server, handler) as address:
        wrong = MessageClient(ClientConfig(address), transport, middleware=[Encryption(bytes(32))])
        async with wrong.connect() as connection:
            await connection.send(b"let me in")
            with pytest.raises((ConnectionLostError, MiddlewareError)):
                await connection.receive(timeout=5)
        with trio.fail_after(5):
            await failed.wait()
    assert "failed authentication" in str(seen[0])


async def test_a_middleware_handshake_that_never_comes_times_out() -> None:
    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:0"))  # no layers
    async with running(server) as address:
        client = MessageClient.with_xtransport(
            ClientConfig(address, connect_timeout=0.3), middleware=[Encryption(KEY)]
        )
        # the plain echo server sends our hello back: a hello that is our own is refused
        with pytest.raises(MiddlewareError):
            async with client.connect():
                pass

    async def silent(connection: MessageConnection) -> None:
        await trio.sleep_forever()

    server = MessageServer.with_xtransport(ServerConfig("tcp://127.0.0.1:0"))
    async with running(server, silent) as address:
        client = MessageClient.with_xtransport(
            ClientConfig(address, connect_timeout=0.3), middleware=[Encryption(KEY)]
        )
        with pytest.raises(VirtrioTimeoutError, match=r"the middleware handshake.*0\.3 s"):
            async with client.connect():
                pass


async def test_the_old_names_io_timeout_and_is_active_still_work_and_warn(
    listen_address: str, transport: Transport
) -> None:
    with pytest.warns(DeprecationWarning, match="'io_timeout' is deprecated, use 'call_timeout'"):
        server_config = ServerConfig(listen_address, io_timeout=7)
    assert server_config.call_timeout == 7
    server = MessageServer(server_config, transport)
    async with running(server) as address:
        with pytest.warns(DeprecationWarning, match="io_timeout"):
            config = ClientConfig.vsock(103, 1234, io_timeout=5)
        assert config.call_timeout == 5
        with pytest.warns(DeprecationWarning, match="io_timeout"):
            config = ClientConfig(address, io_timeout=5)
        assert config.call_timeout == 5
        async with MessageClient(config, transport).connect() as connection:
            assert connection.call_timeout == 5
            with pytest.warns(DeprecationWarning, match="'is_active' is deprecated"):
                assert connection.is_active
            with pytest.warns(DeprecationWarning, match="'io_timeout' is deprecated"):
                assert connection.io_timeout == 5
            await connection.disconnect()
            with pytest.warns(DeprecationWarning, match="is_active"):
                assert not connection.is_active
