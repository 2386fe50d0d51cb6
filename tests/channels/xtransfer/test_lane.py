"""XtransferStream: one xtransport connection as a half-closeable Trio stream (a lane, ended by
an empty message) — Trio's own conformance check, over real socket pairs, in both ack modes."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing

from virtrio.channels.xtransfer import (
    XtransferConfig,
    XtransferLaneLostError,
    XtransferStream,
    open_xtransfer,
)

Pair = tuple[XtransferStream, XtransferStream]


async def _hold(
    sock: socket.socket,
    config: XtransferConfig,
    name: str,
    *,
    task_status: trio.TaskStatus[XtransferStream],
) -> None:
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
    async with open_xtransfer(stream, config) as channel:
        lane = XtransferStream(channel, name=name)
        task_status.started(lane)
        await channel.wait_closed()


async def lane_pair(nursery: trio.Nursery, config: XtransferConfig) -> Pair:
    """Two lanes over the two ends of a real Unix socket pair."""
    a, b = socket.socketpair()
    left = await nursery.start(_hold, a, config, "left")
    right = await nursery.start(_hold, b, config, "right")
    return left, right


@pytest.mark.parametrize("ack", [False, True])
async def test_trio_half_closeable_stream_conformance(ack: bool) -> None:
    config = XtransferConfig(max_frame_size=256, ack=ack)
    async with trio.open_nursery() as nursery:
        await trio.testing.check_half_closeable_stream(lambda: lane_pair(nursery, config), None)
        nursery.cancel_scope.cancel()


async def test_messages_boundaries_and_the_end_of_the_lane() -> None:
    async with trio.open_nursery() as nursery:
        left, right = await lane_pair(nursery, XtransferConfig(max_frame_size=64))
        await left.send(b"a" * 100)
        await left.send_all(b"")  # nothing: an empty message would end the lane
        await left.send(b"bc")
        assert await right.receive_some(30) == b"a" * 30  # a cut message: the rest comes next
        assert await right.receive() == b"a" * 70
        assert await right.receive() == b"bc"
        with pytest.raises(ValueError, match="send_eof"):
            await left.send(b"")
        await left.send_eof()
        with pytest.raises(trio.EndOfChannel):
            await right.receive()
        assert await right.receive_some() == b""
        await right.send_all(b"still open this way")
        assert await left.receive_some() == b"still open this way"
        await right.aclose()  # ends its side first: the peer reads b"", not an error
        assert await left.receive_some() == b""
        assert left.lane_done
        nursery.cancel_scope.cancel()


async def test_a_connection_closed_mid_lane_is_lost_not_eof() -> None:
    async with trio.open_nursery() as nursery:
        left, right = await lane_pair(nursery, XtransferConfig())
        await left.send_all(b"half a conversation")
        await left.channel.aclose()  # the socket goes, no empty message (a killed peer)
        assert await right.receive_some() == b"half a conversation"
        with trio.fail_after(5), pytest.raises(XtransferLaneLostError) as lost:
            await right.receive_some()
        assert isinstance(lost.value, trio.BrokenResourceError)
        with pytest.raises(XtransferLaneLostError):
            await left.send_all(b"x")  # its connection is gone
        await left.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await left.send_all(b"x")  # the lane closed by us: ClosedResourceError
        nursery.cancel_scope.cancel()


async def test_kept_open_lanes_follow_one_another_on_one_connection() -> None:
    async with trio.open_nursery() as nursery:
        left, right = await lane_pair(nursery, XtransferConfig(max_frame_size=64))
        released = []
        for i in range(3):
            ours = XtransferStream(
                left.channel, name=f"lane {i}", keep_open=True, on_close=lambda: released.append(1)
            )
            theirs = XtransferStream(right.channel, name=f"peer {i}", keep_open=True)
            await ours.send(b"request %d" % i)
            assert await theirs.receive() == b"request %d" % i
            await theirs.send(b"reply %d" % i)
            await theirs.send(b"unread %d" % i)  # what ours never reads is discarded at close
            await theirs.send_eof()

            async def close_theirs(theirs: XtransferStream = theirs) -> None:
                assert await theirs.receive_some() == b""  # ours ended its side in aclose()
                await theirs.aclose()

            nursery.start_soon(close_theirs)
            assert await ours.receive() == b"reply %d" % i
            await ours.aclose()
            assert len(released) == i + 1
            assert left.channel.is_connected  # ready for the next lane
        nursery.cancel_scope.cancel()


async def test_a_kept_open_lane_whose_peer_never_ends_it_closes_the_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trio.open_nursery() as nursery:
        left, _right = await lane_pair(nursery, XtransferConfig())
        released = []
        ours = XtransferStream(
            left.channel, name="lane", keep_open=True, on_close=lambda: released.append(1)
        )
        await ours.send(b"hello")
        await ours.aclose()  # the peer never sends its end of the lane: out of step
        assert released == [1]
        assert not left.channel.is_connected
        nursery.cancel_scope.cancel()
