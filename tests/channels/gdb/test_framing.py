"""RSP framing: checksums, escapes, run-length decoding, acks; round trips, splits, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from tests.strategies import splits
from virtrio.channels.gdb import (
    Ack,
    GdbProtocolError,
    Nak,
    Notification,
    Packet,
    PacketReader,
    checksum,
    decode_payload,
    encode_packet,
    escape,
)
from virtrio.channels.gdb._framing import plain_packet


def run_length_encode(data: bytes) -> bytes:
    """What a stub may do to a reply: runs of 4+ as ``c*n`` (n is the count + 29; the count byte
    never ``#`` or ``$``, and here not ``*``, ``+``, ``-`` or ``}`` either)."""
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        run = 1
        while i + run < len(data) and data[i + run] == b and run < 98:
            run += 1
        while run > 1 and (run - 1 + 29) in b"#$*+-}":
            run -= 1
        if b in b"$#}*" or run < 4:
            out += escape(bytes((b,)))
            i += 1
        else:
            out += bytes((b, 0x2A, run - 1 + 29))
            i += run
    return bytes(out)


runs = st.lists(st.tuples(st.integers(0, 255), st.integers(1, 120)), max_size=12).map(
    lambda pairs: b"".join(bytes((b,)) * n for b, n in pairs)
)


def frames(data: bytes | list[bytes]) -> list[object]:
    reader = PacketReader()
    out: list[object] = []
    for chunk in [data] if isinstance(data, bytes) else data:
        reader.receive_data(chunk)
        while (frame := reader.next_frame()) is not None:
            out.append(frame)
    return out


def test_known_packets() -> None:
    assert encode_packet(b"g") == b"$g#67"
    assert encode_packet(b"") == b"$#00"
    assert checksum(b"OK") == 0x9A
    assert frames(b"+$OK#9a-") == [Ack(), Packet(b"OK"), Nak()]
    assert frames(encode_packet(b"Stop:T05", notification=True)) == [Notification(b"Stop:T05")]


def test_escapes_and_run_length_from_the_manual() -> None:
    assert escape(b"a$b#c}d*e") == b"a}\x04b}\x03c}]d}\x0ae"
    assert decode_payload(b"a}\x04b}\x03c}]d}\x0ae") == b"a$b#c}d*e"
    assert decode_payload(b"0* ") == b"0000"  # ' ' is 32: three more
    assert decode_payload(b"x*\x1d") == b"x"  # a count of zero
    # the checksum covers the bytes as they travel, escapes and runs included
    raw = b"0* "
    assert frames(b"$" + raw + b"#%02x" % checksum(raw)) == [Packet(b"0000")]


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"abc}", "inside an escape"), (b"*!", "nothing to repeat"), (b"a*\x01", "run length")],
)
def test_bad_payloads(raw: bytes, message: str) -> None:
    with pytest.raises(GdbProtocolError, match=message):
        decode_payload(raw)


def test_unescaped_frame_characters_are_refused_on_send() -> None:
    with pytest.raises(ValueError, match="unescaped"):
        encode_packet(b"X0,1:#")


def test_bad_checksum_is_a_frame_of_its_own_and_the_next_packet_survives() -> None:
    out = frames(b"$OK#00$OK#9a")
    assert len(out) == 2
    assert type(out[0]).__name__ == "_BadChecksum"
    assert out[1] == Packet(b"OK")


@pytest.mark.parametrize("data", [b"x", b"$OK#zz", b"$OK#9", b"\x03"])
def test_garbage_between_packets(data: bytes) -> None:
    reader = PacketReader()
    reader.receive_data(data)
    if data == b"$OK#9":
        assert reader.next_frame() is None  # incomplete, not wrong
        return
    with pytest.raises(GdbProtocolError):
        reader.next_frame()


def test_oversized_packet_is_refused() -> None:
    reader = PacketReader(max_packet=100)
    reader.receive_data(b"$" + b"0" * 200)
    with pytest.raises(GdbProtocolError, match="longer than 100"):
        reader.next_frame()


@given(st.lists(st.binary(max_size=300), max_size=5), st.data())
def test_round_trip_through_any_split(payloads: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(b"+" + encode_packet(escape(p)) for p in payloads)
    chunks = data.draw(splits(wire))
    expected: list[object] = []
    for p in payloads:
        expected += [Ack(), Packet(p)]
    assert frames(chunks) == expected


@given(runs)
def test_run_length_encoded_replies_decode(payload: bytes) -> None:
    assert decode_payload(run_length_encode(payload)) == payload
    wire = encode_packet(run_length_encode(payload))
    assert frames(wire) == [Packet(payload)]


@given(st.binary(max_size=200), st.data())
def test_garbage_gives_frames_or_a_protocol_error(garbage: bytes, data: st.DataObject) -> None:
    reader = PacketReader(max_packet=64)
    try:
        for chunk in data.draw(splits(garbage)):
            reader.receive_data(chunk)
            while reader.next_frame() is not None:
                pass
    except GdbProtocolError:
        pass


@given(
    st.binary(max_size=5000)
    | st.integers(0, 3000).map(lambda n: b"\xff" * n)
    | st.integers(0, 3000).map(lambda n: b"\x7f" * n)  # the most an ASCII chunk sums to
    | st.text(st.characters(max_codepoint=127), max_size=3000).map(str.encode)
)
def test_checksum_is_the_sum_modulo_256(data: bytes) -> None:
    assert checksum(data) == sum(data) % 256
    assert checksum(bytearray(data)) == checksum(memoryview(data)) == sum(data) % 256


@given(
    st.binary(max_size=1200) | st.text("0123456789abcdef", max_size=5000).map(str.encode),
    st.sampled_from([b"", b"+"]),
    st.integers(min_value=-1, max_value=5010),
)
def test_a_plain_packet_is_what_the_reader_makes_of_it(
    payload: bytes, ack: bytes, corrupt: int
) -> None:
    data = ack + encode_packet(escape(payload))
    if 0 <= corrupt < len(data):  # any byte changed: a bad checksum, a broken frame, ...
        data = data[:corrupt] + bytes(((data[corrupt] + 1) % 256,)) + data[corrupt + 1 :]
    fast = plain_packet(data, len(ack))
    if fast is None:
        return  # (the general path's to read)
    assert frames(data[len(ack) :]) == [Packet(fast)]
    if corrupt < 0:
        assert fast == payload
