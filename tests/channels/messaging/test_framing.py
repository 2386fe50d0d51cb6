"""Virga's 8-byte big-endian length-prefix framing (the sans-I/O decoder and the channel)."""

from __future__ import annotations

import contextlib

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

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
