"""vm.mux(name) with ``protocol: xtransport`` against the real peer ``virtrio mux serve ADDRESS
--echo --transport xtransport`` in its own process: a connection per stream, several at once,
each echoed (sha256), the peer SIGKILLed under a stream in flight and restarted on the same
address, over unix and tcp."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.faults.muxserver import MuxServer
from tests.peers import free_tcp_address
from virtrio.channels.xtransfer import XtransferLaneLostError, XtransferStream
from virtrio.errors import (
    ChannelUnavailableError,
    ConfigError,
    ConnectionLostError,
    LocalProtocolError,
)
from virtrio.nurseries import (
    Backoff,
    ChannelState,
    StateChange,
    Subscription,
    Vm,
    XtransportMux,
    open_vm,
)


def fast() -> Backoff:
    return Backoff(initial=0.02, maximum=0.1, jitter=0)


@pytest.fixture(params=["unix", "tcp"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "unix":
        return f"unix:{tmp_path / 'x.sock'}"
    return free_tcp_address()


@asynccontextmanager
async def served(address: str, *options: str) -> AsyncIterator[MuxServer]:
    server = MuxServer(address, "xtransport", *options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def xmux_vm(address: str, **options: object) -> AsyncIterator[Vm]:
    spec = {"kind": "mux", "protocol": "xtransport", "address": address, **options}
    async with open_vm("t", channels={"x": spec}, backoff=fast, call_timeout=10) as vm:
        await vm.mux("x").wait_connected()
        yield vm


async def echo(stream: trio.abc.HalfCloseableStream, payload: bytes, piece: int) -> bytes:
    """Send ``payload`` in ``piece``-byte writes while reading the echo, then half-close."""
    received = bytearray()

    async def writer() -> None:
        for offset in range(0, len(payload), piece):
            await stream.send_all(payload[offset : offset + piece])
        await stream.send_eof()

    async def reader() -> None:
        while chunk := await stream.receive_some(10_000):
            received.extend(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
    return bytes(received)


async def until_state(vm: Vm, subscription: Subscription[StateChange], state: ChannelState) -> None:
    with trio.fail_after(10):
        while (await subscription.receive()).state is not state:
            pass
    assert vm.channel_states()["x"] is state


@pytest.mark.parametrize(
    ("options", "server"),
    [({}, ()), ({"ack": True, "frame_size": 1024}, ("--ack",))],  # ack is not negotiated
)
async def test_several_streams_echo_with_checksums(
    address: str, options: dict[str, object], server: tuple[str, ...]
) -> None:
    async with served(address, *server), xmux_vm(address, **options) as vm:
        mux = vm.mux("x")
        assert isinstance(mux, XtransportMux)
        assert mux.config.ack is bool(options.get("ack"))
        assert vm.channel_states() == {"x": ChannelState.CONNECTED}
        assert mux.is_connected
        digests: dict[int, tuple[str, str]] = {}

        async def one(i: int) -> None:
            payload = bytes((i * 7 + n) % 251 for n in range(300_000 + i * 1000))
            stream = await mux.open_stream()
            assert mux.open_streams >= 1
            async with stream:
                back = await echo(stream, payload, piece=4096 + i * 333)
            sent = hashlib.sha256(payload).hexdigest()
            digests[i] = (sent, hashlib.sha256(back).hexdigest())

        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(one, i)
        assert len(digests) == 6
        assert all(sent == back for sent, back in digests.values())
        await trio.testing.wait_all_tasks_blocked()
        assert mux.open_streams == 0  # each lane's connection went with its stream


async def test_messages_keep_their_boundaries(address: str) -> None:
    async with served(address), xmux_vm(address) as vm:
        stream = await vm.mux("x").open_stream()
        assert isinstance(stream, XtransferStream)
        async with stream:
            for message in (b"one", b"two two", b"x" * 70_000):
                await stream.send(message)
                assert await stream.receive() == message
            with pytest.raises(ValueError, match="send_eof"):
                await stream.send(b"")
            await stream.send_eof()
            with pytest.raises(trio.EndOfChannel):
                await stream.receive()
            assert await stream.receive_some() == b""
            assert stream.lane_done
            with pytest.raises(trio.ClosedResourceError):
                await stream.send_all(b"after eof")


async def test_sigkill_fails_the_stream_in_flight_and_the_handle_recovers(address: str) -> None:
    async with served(address) as server, xmux_vm(address) as vm:
        mux = vm.mux("x")
        in_flight = await mux.open_stream()
        await in_flight.send_all(b"ping")
        assert await in_flight.receive_some() == b"ping"
        idle = await mux.open_stream()
        with mux.state_changes() as changes:
            server.kill()
            with trio.fail_after(5), pytest.raises(ConnectionLostError) as lost:
                await in_flight.receive_some()  # the echo came back: the next read waits
            assert isinstance(lost.value, XtransferLaneLostError)
            assert isinstance(lost.value, trio.BrokenResourceError)
            await until_state(vm, changes, ChannelState.DISCONNECTED)
        assert not mux.is_connected
        with trio.fail_after(5), pytest.raises(XtransferLaneLostError):
            await idle.receive_some()  # every lane of the dead peer fails, not only busy ones
        with pytest.raises(ChannelUnavailableError):
            await mux.open_stream(timeout=0.2)  # nothing to reconnect to yet
        await in_flight.aclose()
        await idle.aclose()

        await server.stop()
        await server.start()  # the same address
        stream = await mux.open_stream(timeout=10)  # waits for the reconnect
        async with stream:
            assert await echo(stream, b"after the restart", piece=5) == b"after the restart"
        assert vm.channel_states() == {"x": ChannelState.CONNECTED}


async def test_accept_stream_and_ping_say_xtransport_cannot(address: str) -> None:
    async with served(address), xmux_vm(address) as vm:
        mux = vm.mux("x")
        with trio.fail_after(1), pytest.raises(LocalProtocolError, match="does not multiplex"):
            await mux.accept_stream()
        with trio.fail_after(1), pytest.raises(LocalProtocolError, match="no ping"):
            await mux.ping()


async def test_no_peer_then_a_peer(address: str) -> None:
    spec = {"kind": "mux", "protocol": "xtransport", "address": address}
    async with open_vm("t", channels={"x": spec}, backoff=fast, call_timeout=10) as vm:
        mux = vm.mux("x")
        with pytest.raises(ChannelUnavailableError):
            await mux.open_stream(timeout=0.2)
        async with served(address):
            stream = await mux.open_stream(timeout=10)
            async with stream:
                assert await echo(stream, b"late", piece=2) == b"late"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"frame_size": 1024}, "xtransport option"),
        ({"ack": False}, "xtransport option"),
        ({"protocol": "xtransport", "client": False}, "client: false is for yamux"),
        ({"protocol": "xtransport", "frame_size": 16}, "out of range"),
        ({"protocol": "xtransport", "frame_size": 65552}, "out of range"),
    ],
)
async def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    spec = {"kind": "mux", "address": "unix:/nonexistent/x.sock", **options}
    with pytest.raises(ConfigError, match=message):
        async with open_vm("t", channels={"x": spec}):
            pass
