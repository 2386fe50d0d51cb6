"""Virga's 8-byte big-endian length-prefix framing (the sans-I/O decoder and the channel)."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from hypothesis import given, settings, strategies as st

from tests.strategies import splits
from virtrio.channels._jsonstream import NEED_DATA
from virtrio.channels.messaging import (
    LengthPrefixDecoder,
    LengthPrefixedChannel,
    LengthPrefixError,
    encode_length_prefixed,
)


def test_wire_format() -> None:
    assert encode_length_prefixed(b"hello") == bytes.fromhex("0000000000000005") + b"hello"
    assert encode_length_prefixed(b"") == bytes(8)


def drain(decoder: LengthPrefixDecoder) -> list[bytes | None]:
    out: list[bytes | None] = []
    while (message := decoder.next_message()) is not NEED_DATA:
        assert not isinstance(message, type(NEED_DATA))
        out.append(message)
        if message is None:
            break
    return out


@given(st.lists(st.binary(max_size=100), max_size=8), st.data())
def test_round_trip_any_split(messages: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(encode_length_prefixed(m) for m in messages)
    decoder = LengthPrefixDecoder(max_message_size=100)
    got: list[bytes | None] = []
    for chunk in data.draw(splits(wire)):
        decoder.receive_data(chunk)
        got += drain(decoder)
    decoder.receive_data(b"")
    got += drain(decoder)
    assert got == [*messages, None]


@given(st.binary(min_size=1, max_size=64))
def test_garbage_is_an_error_or_messages_never_a_crash(garbage: bytes) -> None:
    decoder = LengthPrefixDecoder(max_message_size=16)
    decoder.receive_data(garbage)
    decoder.receive_data(b"")
    with contextlib.suppress(LengthPrefixError):
        drain(decoder)


def test_oversize_and_truncation_are_clear_errors() -> None:
    decoder = LengthPrefixDecoder(max_message_size=1000)
    decoder.receive_data((2**63).to_bytes(8, "big"))
    with pytest.raises(LengthPrefixError, match="9223372036854775808-byte message; the limit is"):
        decoder.next_message()
    decoder = LengthPrefixDecoder(max_message_size=1000)
    decoder.receive_data(encode_length_prefixed(b"abcdef")[:-2])
    decoder.receive_data(b"")
    with pytest.raises(LengthPrefixError, match=r"inside a message \(4 of 6 bytes"):
        decoder.next_message()
    decoder = LengthPrefixDecoder(max_message_size=1000)
    decoder.receive_data(b"\0\0\0")
    decoder.receive_data(b"")
    with pytest.raises(LengthPrefixError, match="inside a length prefix"):
        decoder.next_message()


async def test_channel_over_a_stream() -> None:
    a, b = trio.testing.memory_stream_pair()
    left = LengthPrefixedChannel(a, max_message_size=1 << 20)
    right = LengthPrefixedChannel(b, max_message_size=1 << 20)
    big = bytes(range(256)) * 1000
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.send, big)
        assert await right.receive() == big
    await left.send(b"x")
    await left.send_eof()
    assert await right.receive() == b"x"
    with pytest.raises(trio.EndOfChannel):
        await right.receive()
    assert not right.is_connected
    await left.aclose()
    await right.aclose()


def test_a_piece_that_is_exactly_one_message_is_that_message() -> None:
    """No copy: over yamux the prefix comes in a frame of its own, the message in the next."""
    decoder = LengthPrefixDecoder(max_message_size=1 << 20)
    message = bytes(range(256)) * 256
    decoder.receive_data(len(message).to_bytes(8, "big"))
    assert decoder.next_message() is NEED_DATA
    assert decoder.needed == len(message)
    decoder.receive_data(message)
    assert decoder.next_message() is message
    assert decoder.needed == 8


@given(st.lists(st.binary(max_size=300), max_size=6), st.data())
def test_needed_is_never_more_than_the_next_message_lacks(
    messages: list[bytes], data: st.DataObject
) -> None:
    """Feeding exactly ``needed`` bytes at a time (as the channel does over yamux) yields
    every message, each as soon as it is whole."""
    wire = b"".join(encode_length_prefixed(m) for m in messages)
    decoder = LengthPrefixDecoder(max_message_size=300)
    got: list[bytes | None] = []
    offset = 0
    while offset < len(wire):
        size = data.draw(st.integers(1, decoder.needed))
        decoder.receive_data(wire[offset : offset + size])
        offset += size
        got += drain(decoder)
    decoder.receive_data(b"")
    got += drain(decoder)
    assert got == [*messages, None]


@pytest.mark.parametrize("peer_frames_it", [False, True])
async def test_channel_over_yamux(peer_frames_it: bool) -> None:
    """Messages of every size through a yamux stream on a socket, both from our channel
    (prefix in a frame of its own) and from a peer writing prefix and message at once."""
    from virtrio.channels.yamux import open_mux

    left, right = trio.socket.socketpair()
    sizes = [0, 1, 8, 100, 65536, 300_000, 3]
    messages = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    async with (
        open_mux(trio.SocketStream(left), client=True) as client,
        open_mux(trio.SocketStream(right), client=False) as server,
    ):
        opened = await client.open_stream()
        accepted = await server.accept_stream()
        sender = LengthPrefixedChannel(opened, max_message_size=1 << 20)
        receiver = LengthPrefixedChannel(accepted, max_message_size=1 << 20)

        async def send() -> None:
            for message in messages:
                if peer_frames_it:
                    await opened.send_all(encode_length_prefixed(message))
                else:
                    await sender.send(message)
            await sender.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            for message in messages:
                assert await receiver.receive() == message
            with pytest.raises(trio.EndOfChannel):
                await receiver.receive()


async def test_messages_sent_by_several_tasks_at_once_never_interleave() -> None:
    from virtrio.channels.yamux import open_mux

    left, right = trio.socket.socketpair()
    async with (
        open_mux(trio.SocketStream(left), client=True) as client,
        open_mux(trio.SocketStream(right), client=False) as server,
    ):
        sender = LengthPrefixedChannel(await client.open_stream(), max_message_size=1 << 20)
        receiver = LengthPrefixedChannel(await server.accept_stream(), max_message_size=1 << 20)

        async def send(task: int) -> None:
            for i in range(20):
                await sender.send(bytes([task]) * (70_000 + i))

        async with trio.open_nursery() as nursery:
            for task in range(5):
                nursery.start_soon(send, task)
            got = [await receiver.receive() for _ in range(100)]
        assert all(message == message[:1] * len(message) for message in got)
        assert sorted((m[0], len(m)) for m in got) == [
            (task, 70_000 + i) for task in range(5) for i in range(20)
        ]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0, 1, 7, 8, 9, 100, 20_000, 70_000]), st.booleans()),
        max_size=6,
    ),
    st.data(),
)
def test_messages_over_yamux_whatever_frames_carry_them(
    shapes: list[tuple[int, bool]], data: st.DataObject
) -> None:
    """The receiver takes a message whole from the stream when its prefix and its bytes are
    there (send_all_prefixed), and goes through the decoder otherwise: the peer's bytes cut
    into frames anywhere (a prefix split, a message in pieces), messages of 0 bytes, the end
    of the stream, and a prefix over the limit."""
    from virtrio.channels.yamux import open_mux

    # (message, whether the channel sends it): the channel's first, then the peer's bytes
    messages = [(bytes([i % 251 + 1]) * size, framed) for i, (size, framed) in enumerate(shapes)]
    oversize = data.draw(st.booleans())
    cuts: list[bytes] = []  # the peer's messages, cut anywhere (also at a prefix's end)
    for message in (m for m, framed in messages if not framed):
        encoded = encode_length_prefixed(message)
        if data.draw(st.booleans()):
            cuts += [encoded[:8], *data.draw(splits(encoded[8:]))]
        else:
            cuts += data.draw(splits(encoded))
    expected = [m for m, framed in messages if framed] + [m for m, framed in messages if not framed]

    async def main() -> None:
        left, right = trio.socket.socketpair()
        async with (
            open_mux(trio.SocketStream(left), client=True) as client,
            open_mux(trio.SocketStream(right), client=False) as server,
        ):
            opened = await client.open_stream()
            accepted = await server.accept_stream()
            sender = LengthPrefixedChannel(opened, max_message_size=70_000)
            receiver = LengthPrefixedChannel(accepted, max_message_size=70_000)

            async def send() -> None:
                for message, framed in messages:
                    if framed:
                        await sender.send(message)
                for piece in cuts:
                    await opened.send_all(piece)
                    await trio.testing.wait_all_tasks_blocked()  # the receiver took it
                if oversize:
                    await opened.send_all(encode_length_prefixed(bytes(70_001)))
                await sender.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                for message in expected:
                    assert await receiver.receive() == message
                with pytest.raises(LengthPrefixError if oversize else trio.EndOfChannel):
                    await receiver.receive()

    trio.run(main)
