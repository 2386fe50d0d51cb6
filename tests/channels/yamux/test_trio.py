"""The Trio yamux shell: streams are real half-closeable Trio streams."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from virtrio.channels.yamux import (
    MuxSession,
    MuxStream,
    SessionLostError,
    StreamResetError,
    open_mux,
)
from virtrio.errors import ConnectionLostError, LocalProtocolError


def transport_pair(kind: str) -> tuple[trio.abc.Stream, trio.abc.Stream]:
    """Two connected transports: Trio memory streams (the generic path) or a Unix socket
    pair (sockets are read and written directly, without Trio's stream layer)."""
    if kind == "socket":
        left, right = trio.socket.socketpair()
        return trio.SocketStream(left), trio.SocketStream(right)
    return trio.testing.memory_stream_pair()


@pytest.fixture(params=["memory", "socket"])
def transport(request: pytest.FixtureRequest) -> str:
    """Which kind of transport the test's sessions run over."""
    return str(request.param)


async def send_one_stream(
    transports: tuple[trio.abc.Stream, trio.abc.Stream],
    payload: bytes,
    client_window: int,
    server_window: int,
) -> bytes:
    """Send ``payload`` on one stream, then close and leave both sessions at once; returns
    what the server side read before EOF."""
    left, right = transports
    received = bytearray()

    async def receive() -> None:
        async with open_mux(right, client=False, window=server_window) as server:
            stream = await server.accept_stream()
            while data := await stream.receive_some():
                received.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        async with open_mux(left, client=True, window=client_window) as client:
            stream = await client.open_stream()
            await stream.send_all(payload)
            await stream.aclose()
    return bytes(received)


@asynccontextmanager
async def mux_pair(kind: str = "memory") -> AsyncIterator[tuple[MuxSession, MuxSession]]:
    left, right = transport_pair(kind)
    async with open_mux(left, client=True) as client, open_mux(right, client=False) as server:
        yield client, server


async def stream_pair(client: MuxSession, server: MuxSession) -> tuple[MuxStream, MuxStream]:
    opened = await client.open_stream()
    accepted = await server.accept_stream()
    return opened, accepted


async def test_check_half_closeable_stream(transport: str) -> None:
    async def maker() -> tuple[MuxStream, MuxStream]:
        left, right = transport_pair(transport)
        nursery = _nursery_holder[0]
        client = await nursery.start(_serve, left, True)
        server = await nursery.start(_serve, right, False)
        return await stream_pair(client, server)

    async with trio.open_nursery() as nursery:
        _nursery_holder[:] = [nursery]
        await trio.testing.check_half_closeable_stream(maker, None)
        nursery.cancel_scope.cancel()


_nursery_holder: list[trio.Nursery] = []


async def _serve(
    transport: trio.abc.Stream, client: bool, *, task_status: trio.TaskStatus[MuxSession]
) -> None:
    async with open_mux(transport, client=client) as session:
        task_status.started(session)
        await trio.sleep_forever()


async def test_many_streams_both_ways(transport: str) -> None:
    async with mux_pair(transport) as (client, server):

        async def echo(stream: MuxStream) -> None:
            while data := await stream.receive_some():
                await stream.send_all(data)
            await stream.send_eof()

        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(50):
                    nursery.start_soon(echo, await server.accept_stream())

        async def talk(i: int) -> None:
            stream = await client.open_stream()
            payload = bytes([i]) * 300_000  # more than a window
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream.send_all, payload)
                got = bytearray()
                while len(got) < len(payload):
                    got += await stream.receive_some()
            assert got == payload
            await stream.send_eof()
            assert await stream.receive_some() == b""

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            for i in range(50):
                nursery.start_soon(talk, i)


async def test_reset_is_not_eof(transport: str) -> None:
    async with mux_pair(transport) as (client, server):
        mine, theirs = await stream_pair(client, server)
        await mine.send_all(b"x")
        await theirs.reset()
        with pytest.raises(StreamResetError):
            await mine.receive_some()
        with pytest.raises(StreamResetError):
            await theirs.send_all(b"y")


async def test_ping_and_go_away(transport: str) -> None:
    async with mux_pair(transport) as (client, server):
        rtt = await client.ping()
        assert rtt >= 0
        await server.go_away()
        await server.ping()  # the GoAway reached the client before this answer
        with pytest.raises(LocalProtocolError, match="GoAway"):
            await client.open_stream()


async def test_slow_reader_throttles_only_its_writer(transport: str) -> None:
    async with mux_pair(transport) as (client, server):
        slow_w, _ = await stream_pair(client, server)
        fast_w, fast_r = await stream_pair(client, server)
        with trio.move_on_after(0.5) as blocked:
            await slow_w.send_all(b"s" * 1_000_000)  # nobody reads: stalls at the window
        assert blocked.cancelled_caught
        await fast_w.send_all(b"f" * 100_000)
        got = bytearray()
        while len(got) < 100_000:
            got += await fast_r.receive_some()
        assert got == b"f" * 100_000


async def test_an_open_waiting_for_a_slot_goes_on_when_an_unacknowledged_stream_is_reset(
    transport: str,
) -> None:
    async with mux_pair(transport) as (client, server):
        pending = [await client.open_stream() for _ in range(256)]  # the server accepts none
        async with trio.open_nursery() as nursery:
            opened: list[MuxStream] = []

            async def open_one() -> None:
                opened.append(await client.open_stream())

            nursery.start_soon(open_one)
            await trio.testing.wait_all_tasks_blocked()
            assert not opened  # 256 wait for an ACK
            await pending[0].reset()
            await trio.testing.wait_all_tasks_blocked()
            assert opened, "the open still waits though a slot is free"
        assert opened[0].stream_id == 2 * 256 + 1
        assert server.is_connected


async def test_go_away_with_an_error_code_ends_the_session() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_mux(left, client=True) as session:
        stream = await session.open_stream()
        await right.receive_some()  # our SYN
        await right.send_all(bytes.fromhex("00 03 0000 00000000 00000002"))  # internal error
        with trio.fail_after(5):
            await session.wait_closed()
        assert isinstance(session.closed_reason, ConnectionLostError)
        assert "GoAway code 2" in str(session.closed_reason)
        with pytest.raises(ConnectionLostError, match="GoAway code 2"):
            await session.open_stream()
        with pytest.raises(SessionLostError):
            await stream.receive_some()


async def test_protocol_error_sends_go_away_and_ends_the_session() -> None:
    left, right = trio.testing.memory_stream_pair()
    async with open_mux(left, client=True) as session:
        stream = await session.open_stream()
        assert (await right.receive_some())[:4] == bytes.fromhex("0001 0001")  # our SYN
        await right.send_all(bytes.fromhex("00 07 0000 00000000 00000000"))  # unknown type
        await session.wait_closed()
        assert await right.receive_some() == bytes.fromhex("00 03 0000 00000000 00000001")
        with pytest.raises(ConnectionLostError, match="frame type 7"):
            await session.open_stream()
        with pytest.raises(SessionLostError):
            await stream.receive_some()


async def test_leaving_open_mux_sends_what_is_still_queued(transport: str) -> None:
    """send_all may return with its data queued (the socket was full); leaving the block
    normally still delivers it, and the FIN, before the connection closes."""
    payload = bytes(range(256)) * 8192  # 2 MiB: more than any socket buffer takes at once
    window = 4 * 1024 * 1024
    assert await send_one_stream(transport_pair(transport), payload, window, window) == payload


async def test_frames_owed_leave_though_the_application_does_nothing_more(
    transport: str,
) -> None:
    """A SYN, ACK or FIN waits a couple of scheduling rounds for a Data frame to share a
    write with, but leaves on its own when none comes (an ACK never sent would stop a peer
    from opening more streams, and makes Go's yamux close the session)."""
    raw, mine = transport_pair(transport)
    async with raw, open_mux(mine, client=False) as server:
        with trio.fail_after(5):
            await raw.send_all(bytes.fromhex("00 01 0001 00000001 00000000"))  # SYN, stream 1
            stream = await server.accept_stream()
            assert await raw.receive_some() == bytes.fromhex("00 01 0002 00000001 00000000")
            await stream.send_eof()
            assert await raw.receive_some() == bytes.fromhex("00 01 0004 00000001 00000000")
            opened = await server.open_stream()
            assert await raw.receive_some() == bytes.fromhex("00 01 0001 00000002 00000000")
            assert opened.stream_id == 2


async def test_a_protocol_error_found_by_a_reading_stream_ends_the_session() -> None:
    """On a socket, a stream with nothing to read handles what the socket holds itself; a
    protocol error met there ends the session just as the reader task would."""
    raw, mine = transport_pair("socket")
    assert isinstance(raw, trio.SocketStream)
    async with raw, open_mux(mine, client=True) as session:
        stream = await session.open_stream()
        assert (await raw.receive_some())[:4] == bytes.fromhex("0001 0001")  # our SYN
        # written without a checkpoint, so the reader task has had no chance to see it
        os.write(raw.socket.fileno(), bytes.fromhex("00 07 0000 00000000 00000000"))
        with pytest.raises(SessionLostError):
            await stream.receive_some()
        await session.wait_closed()
        assert await raw.receive_some() == bytes.fromhex("00 03 0000 00000000 00000001")
        with pytest.raises(ConnectionLostError, match="frame type 7"):
            await session.open_stream()


async def test_a_send_of_more_frames_than_one_writev_takes_arrives_whole() -> None:
    """A window so large that one send_all makes 640 frames, 1281 buffers, more than one
    writev takes (1024): they still arrive whole and in order."""
    payload = random.Random(1).randbytes(160 * 1024 * 1024)  # 640 frames, 1281 buffers
    transports = transport_pair("socket")
    received = await send_one_stream(transports, payload, 256 * 1024, 200 * 1024 * 1024)
    assert received == payload


async def test_the_nowait_pair_queues_and_takes_without_waiting(transport: str) -> None:
    """``send_all_nowait`` queues a small piece to leave with the next write (a message's
    length prefix, in a Data frame of its own); ``receive_some_nowait`` takes what is
    buffered, raises WouldBlock when nothing is, and gives b"" after FIN."""
    async with mux_pair(transport) as (client, server):
        opened, accepted = await stream_pair(client, server)
        with pytest.raises(trio.WouldBlock):
            accepted.receive_some_nowait(10)
        opened.send_all_nowait(b"head")
        await opened.send_all(b"body")
        got = b""
        while len(got) < 8:
            got += await accepted.receive_some(len(b"headbody") - len(got))
        assert got == b"headbody"
        opened.send_all_nowait(b"x" * 3)
        await opened.send_eof()  # what was queued leaves before the FIN
        assert await accepted.receive_some(1) == b"x"
        assert accepted.receive_some_nowait(10) == b"xx"
        assert await accepted.receive_some() == b""
        assert accepted.receive_some_nowait(10) == b""
        with pytest.raises(trio.ClosedResourceError):
            opened.send_all_nowait(b"late")


async def test_send_all_prefixed_is_send_all_of_both(transport: str) -> None:
    """``send_all_prefixed(prefix, data)`` delivers ``prefix + data`` (one piece when it fits
    a frame), also when the credit left cannot take the prefix and a byte (the writer then
    waits for credit, as ``send_all`` does) and when ``data`` is empty."""
    async with mux_pair(transport) as (client, server):
        opened, accepted = await stream_pair(client, server)
        await opened.send_all_prefixed(b"12345678", b"body")
        assert await accepted.receive_some() == b"12345678body"
        await opened.send_all_prefixed(b"8", b"")
        assert await accepted.receive_some() == b"8"
        await opened.send_all(bytes(256 * 1024 - 12 - 4))  # 3 bytes of credit left
        payload = os.urandom(300_000)
        got = bytearray()

        async def read() -> None:
            while len(got) < 256 * 1024 - 16 + 8 + len(payload):
                got.extend(await accepted.receive_some())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await opened.send_all_prefixed(b"PREFIX!!", payload)
        assert got[256 * 1024 - 16 :] == b"PREFIX!!" + payload


async def test_queued_frames_keep_what_was_sent_when_the_caller_reuses_its_buffer() -> None:
    """Behind a full socket, frames wait in the session's queue: views of a caller's bytes,
    but copies of a bytearray (its owner may change it once send_all returns)."""
    left, right = transport_pair("socket")
    assert isinstance(left, trio.SocketStream)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    async with open_mux(left, client=True) as client, open_mux(right, client=False) as server:
        streams = [await client.open_stream() for _ in range(4)]
        accepted = [await server.accept_stream() for _ in range(4)]
        expected = [os.urandom(100_000) for _ in streams]
        for stream, payload in zip(streams, expected, strict=True):
            reused = bytearray(payload)
            await stream.send_all(reused if stream.stream_id % 4 == 1 else payload)
            reused[:] = bytes(len(reused))  # the caller's next use of its buffer
        assert client._unsent  # the socket did not take it all: some of it waits
        for stream, payload in zip(accepted, expected, strict=True):
            got = bytearray()
            while len(got) < len(payload):
                got += await stream.receive_some()
            assert got == payload


async def test_send_all_nowait_never_goes_past_the_credit() -> None:
    async with mux_pair("socket") as (client, server):
        opened, accepted = await stream_pair(client, server)
        await opened.send_all(bytes(256 * 1024))  # all the credit a new stream has
        with pytest.raises(trio.WouldBlock):
            opened.send_all_nowait(b"more")
        got = 0
        while got < 256 * 1024:
            got += len(await accepted.receive_some())
        await opened.wait_send_all_might_not_block()
        opened.send_all_nowait(b"more")  # credit came back
        await opened.send_all(b"")
        assert await accepted.receive_some() == b"more"
        await accepted.reset()
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(StreamResetError):
            accepted.receive_some_nowait(1)


@given(
    st.lists(st.tuples(st.integers(0, 300), st.booleans()), min_size=1, max_size=6),
    st.integers(1, 300),
)
@settings(max_examples=30, deadline=None)
def test_receive_prefixed_takes_whole_records_and_leaves_anything_else(
    records: list[tuple[int, bool]], limit: int
) -> None:
    """``receive_prefixed`` takes a record sent whole with ``send_all_prefixed`` (1 to
    ``limit`` bytes); anything else first (an empty record, one over the limit, one sent in
    two pieces, the end) gives None and leaves the bytes to ``receive_some``, as they came."""

    async def main() -> None:
        async with mux_pair("socket") as (client, server):
            opened, accepted = await stream_pair(client, server)
            for index, (size, whole) in enumerate(records):
                body = bytes([index + 1]) * size
                prefix = size.to_bytes(8, "big")
                if whole:
                    await opened.send_all_prefixed(prefix, body)
                else:
                    await opened.send_all(prefix)
                    await opened.send_all(body)
                await trio.testing.wait_all_tasks_blocked()
                got = await accepted.receive_prefixed(8, limit)
                if whole and 0 < size <= limit:
                    assert got == body
                    continue
                assert got is None
                rest = b""
                while len(rest) < 8 + size:
                    rest += await accepted.receive_some(8 + size - len(rest))
                assert rest == prefix + body
            await opened.send_eof()
            assert await accepted.receive_prefixed(8, limit) is None
            assert await accepted.receive_some() == b""

    trio.run(main)
