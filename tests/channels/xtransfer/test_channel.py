"""open_xtransfer over real TCP and Unix sockets (and a memory stream for the odd cases)."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from virtrio.channels import open_listeners, open_stream
from virtrio.channels.xtransfer import (
    PacketType,
    XtransferChannel,
    XtransferChecksumError,
    XtransferConfig,
    XtransferMagicError,
    XtransferProtocol,
    XtransferTruncatedError,
    encode_packet,
    open_xtransfer,
)
from virtrio.errors import ConnectionLostError

PATTERN = bytes(i & 0xFF for i in range(10000))


@pytest.fixture(params=["tcp", "unix"])
def address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path}/x.sock"


@asynccontextmanager
async def socket_pair(address: str) -> AsyncIterator[tuple[trio.SocketStream, trio.SocketStream]]:
    [listener] = await open_listeners(address)
    async with listener:
        name = listener.socket.getsockname()
        target = f"tcp://127.0.0.1:{name[1]}" if address.startswith("tcp") else address
        async with trio.open_nursery() as nursery:
            accepted: list[trio.SocketStream] = []

            async def accept() -> None:
                accepted.append(await listener.accept())

            nursery.start_soon(accept)
            client = await open_stream(target, connect_timeout=5)
        async with client, accepted[0]:
            yield client, accepted[0]


@asynccontextmanager
async def channel_pair(
    address: str, config: XtransferConfig | None = None
) -> AsyncIterator[tuple[XtransferChannel, XtransferChannel]]:
    async with (
        socket_pair(address) as (a, b),
        open_xtransfer(a, config) as left,
        open_xtransfer(b, config) as right,
    ):
        yield left, right


@pytest.mark.parametrize("ack", [False, True])
async def test_round_trip_small_and_large(address: str, ack: bool) -> None:
    config = XtransferConfig(max_frame_size=1024, ack=ack)
    sizes = [0, 1, 1008, 1009, 10000, 300_000]
    async with channel_pair(address, config) as (left, right):
        async with trio.open_nursery() as nursery:

            async def echo() -> None:
                for _ in sizes:
                    await right.send(await right.receive())

            nursery.start_soon(echo)
            for size in sizes:
                message = (PATTERN * (size // len(PATTERN) + 1))[:size]
                await left.send(message)
                assert await left.receive() == message
        assert left.is_connected
        assert right.is_connected


async def test_full_duplex_concurrent_senders(address: str) -> None:
    async with channel_pair(address, XtransferConfig(ack=True)) as (left, right):
        got: dict[str, list[bytes]] = {"left": [], "right": []}

        async def sender(channel: XtransferChannel, tag: bytes) -> None:
            for i in range(50):
                await channel.send(tag + i.to_bytes(2, "big") * 3000)

        async def receiver(channel: XtransferChannel, name: str) -> None:
            for _ in range(100):
                got[name].append(await channel.receive())

        async with trio.open_nursery() as nursery:
            for tag in (b"a", b"b"):
                nursery.start_soon(sender, left, tag)
                nursery.start_soon(sender, right, tag)
            nursery.start_soon(receiver, left, "left")
            nursery.start_soon(receiver, right, "right")
    for messages in got.values():
        for tag in (b"a", b"b"):
            mine = [m for m in messages if m[:1] == tag]
            assert mine == [tag + i.to_bytes(2, "big") * 3000 for i in range(50)]


async def test_peer_close_ends_the_channel(address: str) -> None:
    async with channel_pair(address) as (left, right):
        await left.send(b"last words")
        await left.aclose()
        assert not left.is_connected
        assert await right.receive() == b"last words"
        with pytest.raises(trio.EndOfChannel):
            await right.receive()
        assert not right.is_connected
        with pytest.raises(ConnectionLostError):
            await left.send(b"more")


async def test_half_close_then_reply(address: str) -> None:
    async with channel_pair(address) as (left, right):
        await left.send(b"question")
        await left.send_eof()
        assert await right.receive() == b"question"
        with pytest.raises(trio.EndOfChannel):
            await right.receive()
        await right.send(b"answer after EOF")
        assert await left.receive() == b"answer after EOF"


async def test_bytes_from_a_raw_peer(address: str) -> None:
    """A peer writing the notes' hand-made packets byte by byte, and reading our Acks."""
    hello = bytes.fromhex("50525458 01 00 00000000 0500 86a61036 68656c6c6f")
    async with (
        socket_pair(address) as (raw, ours),
        open_xtransfer(ours, XtransferConfig(ack=True)) as channel,
    ):
        for byte in hello:
            await raw.send_all(bytes([byte]))
        assert await channel.receive() == b"hello"
        ack = await raw.receive_some(100)
        assert ack == encode_packet(PacketType.ACK, 0, (0).to_bytes(4, "little"))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.send, b"reply")
            packet = await raw.receive_some(100)
            assert packet == encode_packet(PacketType.DATA, 1, b"reply")
            await raw.send_all(encode_packet(PacketType.ACK, 1, (1).to_bytes(4, "little")))


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", XtransferMagicError),
        (encode_packet(PacketType.DATA, 0, b"hello")[:-1] + b"O", XtransferChecksumError),
    ],
)
async def test_garbage_from_the_peer_is_a_clear_error(
    address: str, garbage: bytes, error: type[Exception]
) -> None:
    async with socket_pair(address) as (raw, ours), open_xtransfer(ours) as channel:
        await raw.send_all(encode_packet(PacketType.DATA, 0, b"fine") + garbage)
        assert await channel.receive() == b"fine"
        with pytest.raises(error):
            await channel.receive()
        assert not channel.is_connected
        # we closed the connection on the peer
        assert await raw.receive_some(100) == b""


async def test_truncated_message_at_eof() -> None:
    a, b = trio.testing.memory_stream_pair()
    async with open_xtransfer(b) as channel:
        head = encode_packet(PacketType.MESSAGE_HEAD, 0, bytes(32))
        head = head[:16] + (10).to_bytes(8, "little") + (1).to_bytes(8, "little")
        head += (2).to_bytes(4, "little") + bytes(12)
        head = head[:12] + zlib.crc32(head[16:]).to_bytes(4, "little") + head[16:]
        await a.send_all(head + encode_packet(PacketType.MESSAGE_DATA, 1, b"abc"))
        await a.aclose()
        with pytest.raises(XtransferTruncatedError, match="3 of 10 bytes"):
            await channel.receive()


async def test_ack_wait_fails_when_the_peer_goes_away(address: str) -> None:
    async with (
        socket_pair(address) as (raw, ours),
        open_xtransfer(ours, XtransferConfig(ack=True)) as channel,
        trio.open_nursery() as nursery,
    ):

        async def close_after_packet() -> None:
            assert await raw.receive_some(100)
            await raw.aclose()

        nursery.start_soon(close_after_packet)
        with pytest.raises(ConnectionLostError):
            await channel.send(b"never acknowledged")


# -- who reads: without acks, the task that waits reads for everyone -------------------------


async def test_a_cancelled_reader_hands_the_reading_over(address: str) -> None:
    async with socket_pair(address) as (raw, ours), open_xtransfer(ours) as channel:
        got: list[bytes] = []
        first = trio.CancelScope()
        with trio.fail_after(5):  # the second would wait for ever if the reading were lost
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_receive_into, channel, got, first)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(_receive_into, channel, got)  # waits for the first's read
                await trio.testing.wait_all_tasks_blocked()
                first.cancel()  # the first gives up inside receive_some: nothing was read
                await trio.testing.wait_all_tasks_blocked()
                await raw.send_all(encode_packet(PacketType.DATA, 0, b"for the second"))
        assert got == [b"for the second"]


async def _receive_into(
    channel: XtransferChannel, got: list[bytes], scope: trio.CancelScope | None = None
) -> None:
    if scope is None:
        got.append(await channel.receive())
        return
    with scope:
        got.append(await channel.receive())


async def test_wait_closed_reads_while_nobody_receives_and_keeps_the_messages(
    address: str,
) -> None:
    async with socket_pair(address) as (raw, ours), open_xtransfer(ours) as channel:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.wait_closed)
            await raw.send_all(encode_packet(PacketType.DATA, 0, b"kept"))
            await trio.testing.wait_all_tasks_blocked()
            assert channel.is_connected
            await raw.send_eof()
        # wait_closed returned: it saw the end, and kept the message for receive
        assert not channel.is_connected
        assert await channel.receive() == b"kept"
        with pytest.raises(trio.EndOfChannel):
            await channel.receive()


async def test_wait_closed_steps_aside_for_a_receiver_and_reads_again_after(
    address: str,
) -> None:
    async with socket_pair(address) as (raw, ours), open_xtransfer(ours) as channel:
        closed = trio.Event()

        async def watch() -> None:
            await channel.wait_closed()
            closed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            for index in range(3):  # the watcher's read or the receiver's: either delivers
                message = b"m%d" % index
                await raw.send_all(encode_packet(PacketType.DATA, index, message))
                assert await channel.receive() == message
            await trio.testing.wait_all_tasks_blocked()
            assert not closed.is_set()
            await raw.send_eof()  # nobody receives now: the watcher must see this alone
            with trio.fail_after(5):
                await closed.wait()


async def test_concurrent_receivers_share_the_messages(address: str) -> None:
    count = 200
    async with socket_pair(address) as (raw, ours), open_xtransfer(ours) as channel:
        got: list[bytes] = []

        async def receiver() -> None:
            while True:
                try:
                    got.append(await channel.receive())
                except trio.EndOfChannel:
                    return

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(receiver)
            sender = XtransferProtocol(XtransferConfig(max_frame_size=1024))
            for index in range(count):
                sender.send_message(index.to_bytes(2, "big") * (index * 7 % 1500))
                await raw.send_all(sender.data_to_send())
            await raw.send_eof()
        assert sorted(got) == sorted(
            index.to_bytes(2, "big") * (index * 7 % 1500) for index in range(count)
        )


async def test_senders_take_turns_and_a_cancelled_waiter_loses_no_turn(address: str) -> None:
    async with channel_pair(address) as (left, right):
        got: list[bytes] = []

        async def receiver() -> None:
            while not got or got[-1] != b"last":
                got.append(await right.receive())

        async def sender(tag: int) -> None:
            for index in range(20):
                await left.send(bytes([tag, index]) * 50_000)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receiver)
                for tag in range(4):
                    nursery.start_soon(sender, tag)
                await trio.testing.wait_all_tasks_blocked()
                with trio.CancelScope() as scope:
                    scope.cancel()  # gives up waiting for its turn (or before): none is lost
                    await left.send(b"cancelled")
                await left.send(b"last")
        for tag in range(4):
            mine = [message for message in got if message[:1] == bytes([tag])]
            assert mine == [bytes([tag, index]) * 50_000 for index in range(20)]
        # (a send cancelled once its message was queued still sends it: the next write does)
        assert set(got) - {
            bytes([tag, index]) * 50_000 for tag in range(4) for index in range(20)
        } <= {b"cancelled", b"last"}
