"""The channel's two ways of moving bytes: straight on a socket (os.read, os.writev) and
through any Trio stream."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from virtrio.channels.xtransfer import open_xtransfer
from virtrio.channels.xtransfer._io import SocketIO, StreamIO, io_for

buffer_lists = st.lists(
    st.binary(max_size=70000) | st.binary(max_size=70000).map(memoryview),
    max_size=12,
)


def _socket_pair(small_buffers: bool) -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = socket.socketpair()
    if small_buffers:  # writev takes part of the buffers and the sender waits for room
        for sock in (a, b):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(a)),
        trio.SocketStream(trio.socket.from_stdlib_socket(b)),
    )


async def _carry(buffers: list[bytes | memoryview], small_buffers: bool) -> bytes:
    left, right = _socket_pair(small_buffers)
    sender, receiver = io_for(left), io_for(right)
    assert isinstance(sender, SocketIO)
    got = bytearray()
    async with left, right, trio.open_nursery() as nursery:

        async def send() -> None:
            await sender.send(list(buffers))
            await left.send_eof()

        nursery.start_soon(send)
        while data := await receiver.receive():
            got += data
    return bytes(got)


@settings(max_examples=40, deadline=None)
@given(buffer_lists, st.booleans())
def test_socket_io_carries_any_buffers_in_order(
    buffers: list[bytes | memoryview], small_buffers: bool
) -> None:
    expected = b"".join(buffers)
    assert trio.run(_carry, buffers, small_buffers) == expected


async def test_more_buffers_than_one_writev_takes() -> None:
    buffers: list[bytes | memoryview] = [bytes([index % 251]) * 3 for index in range(3000)]
    assert await _carry(buffers, small_buffers=False) == b"".join(buffers)


async def test_socket_io_after_close_is_a_closed_resource() -> None:
    left, right = _socket_pair(False)
    io = SocketIO(left)
    await left.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await io.receive()
    with pytest.raises(trio.ClosedResourceError):
        await io.send([b"x"])
    await right.aclose()


async def test_socket_io_a_close_under_a_waiting_read() -> None:
    left, right = _socket_pair(False)
    io = SocketIO(left)
    async with trio.open_nursery() as nursery:

        async def read() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await io.receive()

        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        await left.aclose()
    await right.aclose()


async def test_a_send_is_a_checkpoint_even_when_the_socket_takes_all() -> None:
    left, right = _socket_pair(False)
    async with right, open_xtransfer(left) as channel:
        with trio.fail_after(5):  # the socket buffers take both: nobody needs to read
            with trio.testing.assert_checkpoints():
                await channel.send(b"small")
            with trio.testing.assert_checkpoints():
                await channel.send(b"big" * 10_000)


async def test_any_other_stream_goes_through_stream_io() -> None:
    a, b = trio.testing.memory_stream_pair()
    sender, receiver = io_for(a), io_for(b)
    assert isinstance(sender, StreamIO)
    await sender.send([b"ab", memoryview(b"cd"), b"e"])
    await sender.send([b"alone"])
    got = b""
    while len(got) < 10:
        got += await receiver.receive()
    assert got == b"abcdealone"


async def test_after_a_long_read_the_next_tries_first_and_waits_when_nothing_came() -> None:
    left, right = _socket_pair(False)
    reader = SocketIO(right)
    async with left, right:
        await left.send_all(b"a" * 100_000)
        with trio.testing.assert_checkpoints():
            first = await reader.receive()  # waits first: nothing was read before
        got = len(first)
        while got < 100_000:
            with trio.testing.assert_checkpoints():  # tried at once: a checkpoint still
                got += len(await reader.receive())
        async with trio.open_nursery() as nursery:

            async def late() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await left.send_all(b"late")

            nursery.start_soon(late)
            with trio.fail_after(5), trio.testing.assert_checkpoints():
                assert await reader.receive() == b"late"  # tried, nothing: waited
        await left.send_all(b"kept")
        with trio.CancelScope() as scope:
            scope.cancel()
            await reader.receive()  # cancelled before it reads: the bytes stay
        with trio.fail_after(5):
            assert await reader.receive() == b"kept"
