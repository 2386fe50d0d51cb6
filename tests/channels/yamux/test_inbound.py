"""Who reads a socket session's input (``_inbound.ReadTurn``): a stream's reader with nothing
buffered reads and dispatches the socket's frames itself, the reader task naps meanwhile and
takes the turn back when nobody reads. Whoever reads, every frame reaches its stream, in
order, whatever the cuts, the cancellations and the number of readers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from tests.strategies import splits
from virtrio.channels.yamux import (
    MuxSession,
    MuxStream,
    SessionLostError,
    StreamResetError,
    _wire,
    open_mux,
)
from virtrio.channels.yamux._frames import HEADER_SIZE, Flag, FrameType, encode_header

SYN, FIN = int(Flag.SYN), int(Flag.FIN)
DATA, WINDOW_UPDATE, PING = FrameType.DATA, FrameType.WINDOW_UPDATE, FrameType.PING


def data_frame(stream_id: int, body: bytes, flags: int = 0) -> bytes:
    return encode_header(DATA, flags, stream_id, len(body)) + body


def ping(opaque: int) -> bytes:
    return encode_header(PING, SYN, 0, opaque)


@asynccontextmanager
async def two_streams() -> AsyncIterator[
    tuple[trio.SocketStream, MuxSession, MuxStream, MuxStream]
]:
    """A server session on one end of a socketpair, the raw peer on the other, and the two
    streams (1 and 3) the peer opened, accepted."""
    left, right = trio.socket.socketpair()
    peer = trio.SocketStream(left)
    async with peer, open_mux(trio.SocketStream(right), client=False) as session:
        await peer.send_all(
            encode_header(WINDOW_UPDATE, SYN, 1, 0) + encode_header(WINDOW_UPDATE, SYN, 3, 0)
        )
        yield peer, session, await session.accept_stream(), await session.accept_stream()


async def read_frames(sock: trio.SocketStream, frames: list[tuple[int, int, int, int]]) -> None:
    """Collect the session's frames (type, flags, stream id, length) until the end."""
    buffer = b""
    while data := await sock.receive_some():
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            kind, flags, stream_id, length = (
                buffer[1],
                int.from_bytes(buffer[2:4], "big"),
                int.from_bytes(buffer[4:8], "big"),
                int.from_bytes(buffer[8:12], "big"),
            )
            size = HEADER_SIZE + (length if kind == DATA else 0)
            if len(buffer) < size:
                break
            frames.append((kind, flags, stream_id, length))
            buffer = buffer[size:]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(1, 3000), st.booleans()), min_size=1, max_size=12
    ),
    st.lists(st.sampled_from([None, 1, 7, 100, 5000]), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
    st.data(),
)
def test_every_frame_reaches_its_stream_whoever_reads(
    pieces: list[tuple[int, int, bool]],
    sizes: list[int | None],
    cancels: list[bool],
    data: st.DataObject,
) -> None:
    """Three streams read at once (each reading the socket itself when it has nothing, or
    waiting for the one that does), some reads cancelled mid-wait and taken up again; the
    peer's frames (data for the three, pings) cut anywhere and written with pauses: each
    stream reads its bytes in order, then the end, and every ping is answered."""
    streams = (1, 3, 5)
    expected = {stream_id: bytearray() for stream_id in streams}
    wire = b"".join(encode_header(WINDOW_UPDATE, SYN, stream_id, 0) for stream_id in streams)
    pings = 0
    for index, (which, size, with_ping) in enumerate(pieces):
        body = bytes([index % 251 + 1]) * size
        expected[streams[which]] += body
        wire += data_frame(streams[which], body)
        if with_ping:
            pings += 1
            wire += ping(pings)
    wire += b"".join(data_frame(stream_id, b"", FIN) for stream_id in streams)
    cuts = data.draw(splits(wire))
    pauses = data.draw(st.lists(st.booleans(), min_size=len(cuts), max_size=len(cuts)))

    async def main() -> None:
        left, right = trio.socket.socketpair()
        peer = trio.SocketStream(left)
        frames: list[tuple[int, int, int, int]] = []
        got = {stream_id: bytearray() for stream_id in streams}
        async with peer, open_mux(trio.SocketStream(right), client=False) as session:

            async def reader(index: int) -> None:
                stream = await session.accept_stream()
                received = got[stream.stream_id]
                cancel = cancels[index]
                while True:
                    if cancel:  # a read cancelled while it waits (for the turn or the socket)
                        cancel = False
                        with trio.CancelScope() as scope:
                            await trio.testing.wait_all_tasks_blocked()
                            scope.cancel()
                            received += await stream.receive_some(sizes[index])
                        continue
                    chunk = await stream.receive_some(sizes[index])
                    if not chunk:
                        return
                    received += chunk

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_frames, peer, frames)
                async with trio.open_nursery() as readers:
                    for index in range(3):
                        readers.start_soon(reader, index)
                    for piece, pause in zip(cuts, pauses, strict=True):
                        await peer.send_all(piece)
                        if pause:
                            await trio.testing.wait_all_tasks_blocked()
                with trio.fail_after(10):  # (a hang guard, not a timing)
                    while sum(1 for f in frames if f[0] == PING) < pings:
                        await trio.sleep(0.001)
                nursery.cancel_scope.cancel()
        assert got == expected
        assert sorted(f[3] for f in frames if f[0] == PING) == list(range(1, pings + 1))

    trio.run(main)


async def test_input_nobody_waits_for_is_read_once_the_last_reader_is_gone() -> None:
    """A stream's reader took the turn and gave it back; nobody reads since. A ping from the
    peer is still answered (by the reader task, once the turn is back with it)."""
    left, right = trio.socket.socketpair()
    peer = trio.SocketStream(left)
    async with peer, open_mux(trio.SocketStream(right), client=False) as session:
        await peer.send_all(encode_header(WINDOW_UPDATE, SYN, 1, 0))
        stream = await session.accept_stream()
        turn = session._turn
        assert turn is not None

        async def send_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            assert turn.holder == "stream"  # the stream's reader waits for the socket
            await peer.send_all(data_frame(1, b"hi"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_soon)
            assert await stream.receive_some() == b"hi"
        assert turn.holder is None
        await peer.send_all(ping(7))
        with trio.fail_after(10):
            answer = b""
            while ping(7)[4:] not in answer:
                answer += await peer.receive_some()
        assert session.pings_answered == 1


async def test_a_reader_cancelled_while_it_holds_the_turn_hands_the_reading_over() -> None:
    """A stream's reader waiting for the socket is cancelled: the data that comes next, for
    another stream whose reader waits for the turn, still reaches it."""
    async with two_streams() as (peer, _, first, second):
        got: list[bytes] = []

        async def wait_for_second() -> None:
            got.append(await second.receive_some())

        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                nursery.start_soon(wait_for_second)

                async def cancel_soon() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(cancel_soon)
                await first.receive_some()  # holds the turn (or waits for it): cancelled
            assert scope.cancelled_caught
            await peer.send_all(data_frame(3, b"for the second"))
        assert got == [b"for the second"]
        await peer.send_all(data_frame(1, b"for the first"))
        assert await first.receive_some() == b"for the first"


async def test_a_reset_by_another_task_wakes_a_reader_holding_the_turn() -> None:
    left, right = trio.socket.socketpair()
    peer = trio.SocketStream(left)
    async with peer, open_mux(trio.SocketStream(right), client=False) as session:
        await peer.send_all(encode_header(WINDOW_UPDATE, SYN, 1, 0))
        stream = await session.accept_stream()

        async def reset_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            assert session._turn is not None
            assert session._turn.holder == "stream"
            await stream.reset()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reset_soon)
            with pytest.raises(StreamResetError):
                await stream.receive_some()
        # the session goes on: another stream reads the socket
        await peer.send_all(encode_header(WINDOW_UPDATE, SYN, 3, 0) + data_frame(3, b"on"))
        assert await (await session.accept_stream()).receive_some() == b"on"


async def test_the_end_of_the_connection_read_by_a_stream_ends_the_session() -> None:
    left, right = trio.socket.socketpair()
    peer = trio.SocketStream(left)
    async with peer, open_mux(trio.SocketStream(right), client=False) as session:
        await peer.send_all(encode_header(WINDOW_UPDATE, SYN, 1, 0))
        stream = await session.accept_stream()

        async def close_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            await peer.send_eof()  # (a half-close: the session reads the end)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(SessionLostError):
                await stream.receive_some()
        await session.wait_closed()
        assert "closed the connection" in str(session.closed_reason)


async def test_writers_over_the_high_water_mark_wait_and_the_queue_stays_bounded() -> None:
    """Eight writers to a peer that does not read: once the session holds more than
    HIGH_WATER unsent, a writer waits before it queues more; woken by the drain, each queues
    its piece and goes on. Unsent bytes never exceed the mark by more than one piece per
    writer, and everything arrives once the peer reads."""
    from virtrio.channels.yamux._stream import HIGH_WATER

    left, right = trio.socket.socketpair()
    peer = trio.SocketStream(left)
    piece = 64 * 1024
    most = 0
    async with peer, open_mux(trio.SocketStream(right), client=True) as session:

        async def writer() -> None:
            nonlocal most
            stream = await session.open_stream()
            for _ in range(4):  # 256 KiB: the credit a stream has before any update
                await stream.send_all(bytes(piece))
                most = max(most, session._unsent)

        frames: list[tuple[int, int, int, int]] = []
        async with trio.open_nursery() as reading:
            async with trio.open_nursery() as writing:
                for _ in range(8):
                    writing.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                assert session._unsent > HIGH_WATER  # the writers wait: the peer reads nothing
                reading.start_soon(read_frames, peer, frames)
            assert most <= HIGH_WATER + 8 * piece
            with trio.fail_after(10):  # (a hang guard, not a timing)
                while sum(f[3] for f in frames if f[0] == DATA) < 8 * 4 * piece:
                    await trio.sleep(0.001)
            reading.cancel_scope.cancel()


async def test_a_reader_holding_the_turn_reads_on_after_a_full_read_without_a_socket_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that filled its buffer leaves more in the socket: the stream's reader holding
    the turn lets the tasks it woke run, then reads again without waiting for the socket
    (each wait costs an epoll_ctl and its event). Only a read that found nothing waits; every
    byte still reaches its stream."""
    monkeypatch.setattr(_wire, "_RECEIVE_SIZE", 4096)
    async with two_streams() as (peer, session, first, second):
        turn, wire = session._turn, session._wire
        assert turn is not None
        assert isinstance(wire, _wire.SocketWire)
        waits = 0
        wait_readable = wire.wait_readable

        async def counted() -> None:
            nonlocal waits
            waits += turn.holder == "stream"
            await wait_readable()

        monkeypatch.setattr(wire, "wait_readable", counted)
        others = b"".join(data_frame(3, bytes([n]) * 1000) for n in range(40))

        async def send_soon() -> None:
            await trio.testing.wait_all_tasks_blocked()
            assert turn.holder == "stream"
            await peer.send_all(others + data_frame(1, b"mine"))  # several reads' worth

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_soon)
            assert await first.receive_some() == b"mine"
        assert waits == 1  # before the first read only: those after it found their bytes
        assert await second.receive_some() == b"".join(bytes([n]) * 1000 for n in range(40))
