"""The daemon's connection (virtrio/engine/pty/_connection.py): queued output goes out by
writev, in order and whole, whatever the socket takes at a time."""

from __future__ import annotations

import socket
from typing import Any, cast

import pytest
import trio
from hypothesis import given, settings, strategies as st

from virtrio.engine.pty._connection import Connection


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=12),
    read_size=st.sampled_from([1024, 65536]),
)
def test_parts_go_out_in_order_and_whole_through_a_full_socket(
    sizes: list[int], read_size: int
) -> None:
    parts = [bytes([n % 251]) * size for n, size in enumerate(sizes)]

    async def main() -> None:
        ours, theirs = trio.socket.socketpair()
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # full at once
        stream = trio.SocketStream(ours)
        connection = Connection(cast(Any, None), stream)
        received = bytearray()

        async def read_slowly() -> None:
            while len(received) < sum(sizes):
                received.extend(await theirs.recv(read_size))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                await connection._send_parts(parts)
        assert received == b"".join(parts)
        stream.socket.close()
        theirs.close()

    trio.run(main)


async def test_a_broken_socket_is_a_broken_resource() -> None:
    ours, theirs = trio.socket.socketpair()
    theirs.close()
    connection = Connection(cast(Any, None), trio.SocketStream(ours))
    with pytest.raises(trio.BrokenResourceError):
        await connection._send_parts([b"x" * 10])
    ours.close()
