"""The sans-I/O xtransport core: the notes' test vectors, limits, ack mode, hypothesis."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, strategies as st

from tests.strategies import splits
from virtrio.channels.xtransfer import (
    NEED_DATA,
    ConnectionClosed,
    Message,
    MessageDelivered,
    PacketType,
    XtransferChecksumError,
    XtransferConfig,
    XtransferError,
    XtransferFramingError,
    XtransferMagicError,
    XtransferMessageTooLargeError,
    XtransferProtocol,
    XtransferTruncatedError,
    XtransferVersionError,
    encode_packet,
)
from virtrio.errors import ConfigError, ProtocolError

PATTERN = bytes(i & 0xFF for i in range(10000))


def events(protocol: XtransferProtocol) -> list[object]:
    out = []
    while (event := protocol.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def messages(data: bytes, config: XtransferConfig | None = None) -> list[bytes]:
    receiver = XtransferProtocol(config)
    receiver.receive_data(data)
    return [e.data for e in events(receiver) if isinstance(e, Message)]


# -- the test vectors of shared/lab/xtransfer-notes.md --------------------------------------


def test_vector_empty_message() -> None:
    wire = XtransferProtocol()
    wire.send_message(b"")
    assert wire.data_to_send() == bytes.fromhex("50525458 01 00 00000000 0000 00000000")


def test_vector_hello() -> None:
    wire = XtransferProtocol()
    wire.send_message(b"hello")
    assert zlib.crc32(b"hello") == 0x3610A686
    assert wire.data_to_send() == bytes.fromhex("50525458 01 00 00000000 0500 86a61036 68656c6c6f")


def test_vector_ack_for_seq_5_sent_as_seq_9() -> None:
    assert encode_packet(PacketType.ACK, 9, (5).to_bytes(4, "little")) == bytes.fromhex(
        "50525458 01 03 09000000 0400 2e2f9a16 05000000"
    )
    # and the core produces it: a receiver that already sent 9 packets acks the peer's seq 5
    receiver = XtransferProtocol(XtransferConfig(ack=True))
    receiver._send_seq = 9
    receiver.receive_data(encode_packet(PacketType.DATA, 5, b"x"))
    assert receiver.data_to_send() == bytes.fromhex(
        "50525458 01 03 09000000 0400 2e2f9a16 05000000"
    )


def test_vector_10000_byte_message() -> None:
    wire = XtransferProtocol(XtransferConfig(max_frame_size=4096))
    wire.send_message(PATTERN)
    data = wire.data_to_send()
    head = bytes.fromhex(
        "50525458 01 01 00000000 2000 c76c8583"
        "1027000000000000 0100000000000000 03000000 00000000 0000000000000000"
    )
    assert data[:48] == head
    offset = 48
    for seq, (start, end, crc) in enumerate(
        [(0, 4080, 0x4CAC5718), (4080, 8160, 0x38D30506), (8160, 10000, 0xA01D6D15)], start=1
    ):
        length = end - start
        header = struct.pack("<IBBIHI", 0x58545250, 1, 2, seq, length, crc)
        assert data[offset : offset + 16] == header
        assert data[offset + 16 : offset + 16 + length] == PATTERN[start:end]
        offset += 16 + length
    assert offset == len(data)
    assert messages(data) == [PATTERN]


def test_message_ids_count_multi_packet_messages_only() -> None:
    wire = XtransferProtocol(XtransferConfig(max_frame_size=32))
    wire.send_message(b"a" * 100)
    wire.send_message(b"short")
    wire.send_message(b"b" * 17)
    data = wire.data_to_send()
    heads = []
    offset = 0
    seqs = []
    while offset < len(data):
        _, _, kind, seq, length, _ = struct.unpack_from("<IBBIHI", data, offset)
        seqs.append(seq)
        if kind == PacketType.MESSAGE_HEAD:
            heads.append(struct.unpack_from("<QQII", data, offset + 16))
        offset += 16 + length
    assert heads == [(100, 1, 7, 0), (17, 2, 2, 0)]
    assert seqs == list(range(len(seqs)))
    assert messages(data) == [b"a" * 100, b"short", b"b" * 17]


def test_message_of_exactly_one_payload_is_a_data_packet() -> None:
    wire = XtransferProtocol(XtransferConfig(max_frame_size=1024))
    wire.send_message(b"z" * 1008)
    data = wire.data_to_send()
    assert data[5] == PacketType.DATA
    assert len(data) == 1024


def test_sequence_numbers_wrap() -> None:
    wire = XtransferProtocol()
    wire._send_seq = 0xFFFFFFFF
    wire.send_message(b"a")
    wire.send_message(b"b")
    data = wire.data_to_send()
    assert struct.unpack_from("<I", data, 6)[0] == 0xFFFFFFFF
    assert struct.unpack_from("<I", data, 17 + 6)[0] == 0


# -- configuration limits --------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 16, 65552, 1 << 20])
def test_frame_size_out_of_range_is_rejected(size: int) -> None:
    with pytest.raises(ConfigError, match="max_frame_size"):
        XtransferConfig(max_frame_size=size)


@pytest.mark.parametrize("size", [17, 1024, 4096, 65551])
def test_frame_size_limits_accepted(size: int) -> None:
    wire = XtransferProtocol(XtransferConfig(max_frame_size=size))
    wire.send_message(PATTERN * 10)
    data = wire.data_to_send()
    assert messages(data) == [PATTERN * 10]


def test_receiver_accepts_larger_frames_than_it_sends() -> None:
    big = XtransferProtocol(XtransferConfig(max_frame_size=65551))
    big.send_message(PATTERN * 7)
    assert messages(big.data_to_send(), XtransferConfig(max_frame_size=17)) == [PATTERN * 7]


# -- corrupt input ---------------------------------------------------------------------------


def hello() -> bytes:
    wire = XtransferProtocol()
    wire.send_message(b"hello")
    return wire.data_to_send()


def corrupt(offset: int, value: int) -> bytes:
    data = bytearray(hello())
    data[offset] = value
    return bytes(data)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (corrupt(0, 0x51), XtransferMagicError, "magic 51 52 54 58"),
        (corrupt(4, 2), XtransferVersionError, "version 2"),
        (corrupt(5, 7), XtransferFramingError, "unknown packet type 7"),
        (corrupt(20, 0x21), XtransferChecksumError, "CRC mismatch"),
        (corrupt(12, 0), XtransferChecksumError, "CRC mismatch"),
        (encode_packet(PacketType.MESSAGE_DATA, 0, b"x"), XtransferFramingError, "without"),
        (encode_packet(PacketType.ACK, 0, b"\0\0\0\0"), XtransferFramingError, "nothing awaits"),
        (encode_packet(PacketType.MESSAGE_HEAD, 0, b"short"), XtransferFramingError, "32"),
    ],
)
def test_corrupt_input_is_a_specific_error(data: bytes, error: type, match: str) -> None:
    receiver = XtransferProtocol()
    receiver.receive_data(data)
    with pytest.raises(error, match=match):
        receiver.next_event()
    # final: raised again, later bytes ignored
    receiver.receive_data(hello())
    with pytest.raises(error):
        receiver.next_event()
    assert issubclass(error, XtransferError)
    assert issubclass(error, ProtocolError)


def head(total: int, count: int, message_id: int = 1) -> bytes:
    return encode_packet(
        PacketType.MESSAGE_HEAD, 0, struct.pack("<QQII8x", total, message_id, count, 0)
    )


def test_oversize_total_length_is_refused_without_allocating() -> None:
    receiver = XtransferProtocol(XtransferConfig(max_message_size=1000))
    receiver.receive_data(head(2**64 - 1, 2**32 - 1))
    with pytest.raises(XtransferMessageTooLargeError, match="18446744073709551615-byte"):
        receiver.next_event()
    default = XtransferProtocol()
    default.receive_data(head(1 << 40, 1 << 24))
    with pytest.raises(XtransferMessageTooLargeError, match="67108864"):
        default.next_event()


@pytest.mark.parametrize(("total", "count"), [(100, 0), (3, 4), (65535 * 2 + 1, 2)])
def test_impossible_packet_counts(total: int, count: int) -> None:
    receiver = XtransferProtocol()
    receiver.receive_data(head(total, count))
    with pytest.raises(XtransferFramingError, match="cannot carry"):
        receiver.next_event()


def test_pieces_must_add_up_to_the_announced_length() -> None:
    short = head(10, 2) + encode_packet(PacketType.MESSAGE_DATA, 1, b"abc")
    receiver = XtransferProtocol()
    receiver.receive_data(short + encode_packet(PacketType.MESSAGE_DATA, 2, b"def"))
    with pytest.raises(XtransferFramingError, match="6 of the 10 bytes"):
        receiver.next_event()
    receiver = XtransferProtocol()
    receiver.receive_data(short + encode_packet(PacketType.MESSAGE_DATA, 2, b"d" * 8))
    with pytest.raises(XtransferFramingError, match="more than the 10 bytes"):
        receiver.next_event()


def test_data_packet_inside_a_message_is_rejected() -> None:
    receiver = XtransferProtocol()
    receiver.receive_data(head(10, 2) + encode_packet(PacketType.DATA, 1, b"x"))
    with pytest.raises(XtransferFramingError, match="Data packet seq 1 inside a message"):
        receiver.next_event()


def test_messages_before_an_error_are_kept() -> None:
    receiver = XtransferProtocol()
    receiver.receive_data(hello() + hello() + b"garbage-garbage-garbage")
    assert receiver.next_event() == Message(b"hello")
    assert receiver.next_event() == Message(b"hello")
    with pytest.raises(XtransferMagicError):
        receiver.next_event()


def test_clean_eof_and_truncation() -> None:
    receiver = XtransferProtocol()
    receiver.receive_data(hello())
    receiver.receive_data(b"")
    assert events(receiver) == [Message(b"hello"), ConnectionClosed()]
    receiver = XtransferProtocol()
    receiver.receive_data(hello()[:-1])
    receiver.receive_data(b"")
    with pytest.raises(XtransferTruncatedError, match="inside a packet"):
        receiver.next_event()
    receiver = XtransferProtocol()
    receiver.receive_data(head(10, 2) + encode_packet(PacketType.MESSAGE_DATA, 1, b"abc"))
    receiver.receive_data(b"")
    with pytest.raises(XtransferTruncatedError, match=r"inside a message \(3 of 10 bytes"):
        receiver.next_event()


# -- ack mode --------------------------------------------------------------------------------


def exchange(a: XtransferProtocol, b: XtransferProtocol) -> list[object]:
    """Shuttle bytes both ways until quiet; the events b and a saw, tagged."""
    seen: list[object] = []
    while True:
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            return seen
        if out_a:
            b.receive_data(out_a)
        if out_b:
            a.receive_data(out_b)
        seen += [("b", e) for e in events(b)] + [("a", e) for e in events(a)]


def test_ack_mode_is_stop_and_wait() -> None:
    config = XtransferConfig(max_frame_size=1024, ack=True)
    sender, receiver = XtransferProtocol(config), XtransferProtocol(config)
    ticket = sender.send_message(PATTERN[:3000])  # head + 3 data packets
    first = sender.data_to_send()
    assert first[5] == PacketType.MESSAGE_HEAD
    assert sender.data_to_send() == b""  # nothing more until the Ack
    assert sender.awaiting_ack
    receiver.receive_data(first)
    ack = receiver.data_to_send()
    assert ack == encode_packet(PacketType.ACK, 0, (0).to_bytes(4, "little"))
    sender.receive_data(ack)
    assert events(sender) == []
    assert sender.data_to_send()[5] == PacketType.MESSAGE_DATA
    sender2 = XtransferProtocol(config)
    seen = exchange(sender2, XtransferProtocol(config))
    assert seen == []
    t1 = sender2.send_message(PATTERN[:3000])
    t2 = sender2.send_message(b"next")
    peer = XtransferProtocol(config)
    assert exchange(sender2, peer) == [
        ("b", Message(PATTERN[:3000])),
        ("a", MessageDelivered(t1)),
        ("b", Message(b"next")),
        ("a", MessageDelivered(t2)),
    ]
    assert ticket == 1
    assert not sender2.awaiting_ack


def test_ack_mode_full_duplex_between_two_virtrio_ends() -> None:
    config = XtransferConfig(max_frame_size=100, ack=True)
    a, b = XtransferProtocol(config), XtransferProtocol(config)
    a.send_message(b"A" * 500)
    b.send_message(b"B" * 300)
    seen = exchange(a, b)
    assert ("b", Message(b"A" * 500)) in seen
    assert ("a", Message(b"B" * 300)) in seen
    assert ("a", MessageDelivered(1)) in seen
    assert ("b", MessageDelivered(1)) in seen


def test_wrong_ack_is_rejected() -> None:
    config = XtransferConfig(ack=True)
    sender = XtransferProtocol(config)
    sender.send_message(b"x")
    sender.data_to_send()
    sender.receive_data(encode_packet(PacketType.ACK, 0, (7).to_bytes(4, "little")))
    with pytest.raises(XtransferFramingError, match="Ack for packet 7, expected one for 0"):
        sender.next_event()
    sender = XtransferProtocol(config)
    sender.send_message(b"x")
    sender.receive_data(encode_packet(PacketType.ACK, 0, b"\0\0"))
    with pytest.raises(XtransferFramingError, match="2-byte payload"):
        sender.next_event()


# -- hypothesis ------------------------------------------------------------------------------

payloads = st.lists(
    st.binary(max_size=300) | st.builds(lambda n: PATTERN[:n], st.integers(0, 10000)), max_size=6
)
configs = st.builds(
    XtransferConfig, max_frame_size=st.integers(17, 2000) | st.sampled_from([4096, 65551])
)


@given(payloads, configs, st.data())
def test_round_trip_any_split(
    msgs: list[bytes], config: XtransferConfig, data: st.DataObject
) -> None:
    sender = XtransferProtocol(config)
    for message in msgs:
        sender.send_message(message)
    wire = sender.data_to_send()
    receiver = XtransferProtocol()
    got: list[object] = []
    for chunk in data.draw(splits(wire)):
        receiver.receive_data(chunk)
        got += events(receiver)
    receiver.receive_data(b"")
    got += events(receiver)
    assert got == [Message(m) for m in msgs] + [ConnectionClosed()]


@given(st.binary(min_size=1, max_size=2000), st.data())
def test_garbage_is_a_clear_error_never_a_crash(garbage: bytes, data: st.DataObject) -> None:
    receiver = XtransferProtocol(XtransferConfig(max_message_size=1 << 16))
    for chunk in data.draw(splits(garbage)):
        receiver.receive_data(chunk)
    receiver.receive_data(b"")
    try:
        while not isinstance(receiver.next_event(), ConnectionClosed):
            pass
    except XtransferError:
        pass


@given(st.binary(min_size=1, max_size=200), st.integers(0, 10**6), st.integers(0, 255))
def test_corrupting_one_byte_never_passes_silently(message: bytes, where: int, xor: int) -> None:
    sender = XtransferProtocol()
    sender.send_message(message)
    wire = bytearray(sender.data_to_send())
    index = where % len(wire)
    wire[index] ^= xor or 1
    receiver = XtransferProtocol()
    receiver.receive_data(bytes(wire))
    receiver.receive_data(b"")
    try:
        got = events(receiver)
    except XtransferError:
        return
    # only a change of seq (never checked, as in xtransfer) or a length that cuts the packet
    assert got == [Message(message), ConnectionClosed()]
    assert 6 <= index < 10


@given(
    st.lists(st.binary(max_size=200), max_size=5),
    st.lists(st.binary(max_size=200), max_size=5),
    st.integers(17, 80),
    st.data(),
)
def test_ack_mode_two_ends_any_interleaving(
    from_a: list[bytes], from_b: list[bytes], frame: int, data: st.DataObject
) -> None:
    """Both ends send at once, bytes arrive in arbitrary pieces: every message arrives in order,
    every ticket is delivered exactly once, nothing is left waiting."""
    config = XtransferConfig(max_frame_size=frame, ack=True)
    a, b = XtransferProtocol(config), XtransferProtocol(config)
    tickets_a = [a.send_message(m) for m in from_a]
    tickets_b = [b.send_message(m) for m in from_b]
    seen: dict[str, list[object]] = {"a": [], "b": []}
    pending = {"a": b"", "b": b""}  # bytes in flight towards a / b
    for _ in range(10_000):
        pending["b"] += a.data_to_send()
        pending["a"] += b.data_to_send()
        if not pending["a"] and not pending["b"]:
            break
        target = data.draw(st.sampled_from([k for k in pending if pending[k]]))
        cut = data.draw(st.integers(1, len(pending[target])))
        chunk, pending[target] = pending[target][:cut], pending[target][cut:]
        receiver = a if target == "a" else b
        receiver.receive_data(chunk)
        seen[target] += events(receiver)
    assert [e for e in seen["b"] if isinstance(e, Message)] == [Message(m) for m in from_a]
    assert [e for e in seen["a"] if isinstance(e, Message)] == [Message(m) for m in from_b]
    assert [e for e in seen["a"] if isinstance(e, MessageDelivered)] == [
        MessageDelivered(t) for t in tickets_a
    ]
    assert [e for e in seen["b"] if isinstance(e, MessageDelivered)] == [
        MessageDelivered(t) for t in tickets_b
    ]
    assert not a.awaiting_ack
    assert not b.awaiting_ack


# -- the fast paths: one buffer per message, payloads parsed where they lie ------------------


def reference_wire(message: bytes, max_payload: int, seq: int, message_id: int) -> bytes:
    """Packet by packet, as xtransfer's send_message writes them."""
    if len(message) <= max_payload:
        return encode_packet(PacketType.DATA, seq, message)
    count = -(-len(message) // max_payload)
    out = [
        encode_packet(
            PacketType.MESSAGE_HEAD, seq, struct.pack("<QQII8x", len(message), message_id, count, 0)
        )
    ]
    for index in range(count):
        piece = message[index * max_payload : (index + 1) * max_payload]
        out.append(encode_packet(PacketType.MESSAGE_DATA, (seq + 1 + index) & 0xFFFFFFFF, piece))
    return b"".join(out)


@given(
    st.integers(0, 20000),
    st.integers(17, 5000) | st.sampled_from([1024, 4096, 65551]),
    st.integers(0, 0xFFFFFFFF) | st.integers(0xFFFFFFF0, 0xFFFFFFFF),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_a_message_is_framed_byte_for_byte_as_packet_by_packet(
    size: int, frame: int, seq: int, kind: type
) -> None:
    message = (PATTERN * 3)[:size]
    wire = XtransferProtocol(XtransferConfig(max_frame_size=frame))
    wire._send_seq = seq
    wire._message_id = 7
    data = bytearray(message)
    wire.send_message(kind(data) if kind is not bytearray else data)
    data[:] = b"\xff" * len(data)  # a caller's buffer may change once send_message returned
    assert wire.data_to_send() == reference_wire(message, frame - 16, seq, 7)


def test_sequence_numbers_wrap_inside_a_message() -> None:
    wire = XtransferProtocol(XtransferConfig(max_frame_size=1024))
    wire._send_seq = 0xFFFFFFFE
    wire.send_message(PATTERN[:3000])  # head + 3 data packets: seqs ..FE, ..FF, 0, 1
    wire.send_message(b"next")
    data = wire.data_to_send()
    seqs, offset = [], 0
    while offset < len(data):
        seqs.append(struct.unpack_from("<I", data, offset + 6)[0])
        offset += 16 + struct.unpack_from("<H", data, offset + 10)[0]
    assert seqs == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1, 2]
    assert messages(data) == [PATTERN[:3000], b"next"]


big_payloads = st.lists(st.builds(lambda n: (PATTERN * 3)[:n], st.integers(0, 30000)), max_size=4)
big_configs = st.builds(
    XtransferConfig, max_frame_size=st.sampled_from([600, 1024, 1041, 2000, 4096, 65551])
)


@given(big_payloads, big_configs, st.data())
def test_big_messages_round_trip_any_split(
    msgs: list[bytes], config: XtransferConfig, data: st.DataObject
) -> None:
    """Pieces long enough to be kept as views, cut anywhere (inside headers, inside payloads)."""
    sender = XtransferProtocol(config)
    for message in msgs:
        sender.send_message(message)
    receiver = XtransferProtocol()
    got: list[object] = []
    for chunk in data.draw(splits(sender.data_to_send())):
        receiver.receive_data(bytearray(chunk))  # a reused buffer: the core must copy it
        got += events(receiver)
    receiver.receive_data(b"")
    got += events(receiver)
    assert got == [Message(m) for m in msgs] + [ConnectionClosed()]


@given(
    st.integers(1100, 20000),
    st.sampled_from([1024, 2000, 4096]),
    st.integers(0, 10**6),
    st.integers(1, 255),
    st.data(),
)
def test_corrupting_a_big_message_never_passes_silently(
    size: int, frame: int, where: int, xor: int, data: st.DataObject
) -> None:
    message = (PATTERN * 2)[:size]
    sender = XtransferProtocol(XtransferConfig(max_frame_size=frame))
    sender.send_message(message)
    sender_wire = sender.data_to_send()
    wire = bytearray(sender_wire)
    index = where % len(wire)
    wire[index] ^= xor
    receiver = XtransferProtocol()
    try:
        for chunk in data.draw(splits(bytes(wire))):
            receiver.receive_data(chunk)
        receiver.receive_data(b"")
        got = events(receiver)
    except XtransferError:
        return
    # only a packet's seq is never checked (the CRC covers the head's message_id and flags)
    assert got == [Message(message), ConnectionClosed()]
    headers, offset = [], 0
    while offset < len(wire):
        headers.append(offset)
        offset += 16 + struct.unpack_from("<H", sender_wire, offset + 10)[0]
    assert any(6 <= index - header < 10 for header in headers)


@given(
    st.lists(st.integers(0, 12000), min_size=1, max_size=3),
    st.sampled_from([1024, 4096]),
    st.data(),
)
def test_ack_mode_big_packets_any_split(sizes: list[int], frame: int, data: st.DataObject) -> None:
    config = XtransferConfig(max_frame_size=frame, ack=True)
    a, b = XtransferProtocol(config), XtransferProtocol(config)
    msgs = [(PATTERN * 2)[:n] for n in sizes]
    tickets = [a.send_message(m) for m in msgs]
    seen: dict[str, list[object]] = {"a": [], "b": []}
    for _ in range(10_000):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for chunk in data.draw(splits(out_a)):
            b.receive_data(chunk)
        for chunk in data.draw(splits(out_b)):
            a.receive_data(chunk)
        seen["b"] += events(b)
        seen["a"] += events(a)
    assert seen["b"] == [Message(m) for m in msgs]
    assert seen["a"] == [MessageDelivered(t) for t in tickets]


def test_small_pieces_are_copied_big_ones_kept_as_views() -> None:
    """A peer sending tiny MessageData packets cannot make us hold a ~200-byte memoryview
    (and the read it points into) per byte."""
    tiny = XtransferProtocol(XtransferConfig(max_frame_size=17))  # 1-byte payloads
    tiny.send_message(PATTERN[:100])
    receiver = XtransferProtocol()
    receiver.receive_data(tiny.data_to_send()[:-17])  # all but the last packet
    assert receiver._assembly is not None
    assert all(type(piece) is bytes for piece in receiver._assembly.pieces)
    big = XtransferProtocol(XtransferConfig(max_frame_size=1024))
    big.send_message(PATTERN)
    receiver = XtransferProtocol()
    receiver.receive_data(big.data_to_send()[:-100])
    assert receiver._assembly is not None
    assert all(type(piece) is memoryview for piece in receiver._assembly.pieces)


@given(st.binary(max_size=5000), st.integers(0, 5000))
def test_the_crc_backend_is_zlibs_crc32_on_views_and_chained(data: bytes, cut: int) -> None:
    from virtrio.channels.xtransfer._wire import crc32

    view = memoryview(data)
    assert crc32(view) == zlib.crc32(data)
    assert crc32(view[cut:], crc32(view[:cut])) == zlib.crc32(data)


@given(
    st.lists(st.integers(0, 20000), max_size=4),
    st.integers(17, 5000) | st.sampled_from([1024, 4096, 65551]),
    st.sampled_from([bytes, bytearray, memoryview]),
)
def test_buffers_to_send_are_the_same_bytes_and_view_a_bytes_message(
    sizes: list[int], frame: int, kind: type
) -> None:
    """The gathering write's buffers, joined, are data_to_send's bytes; a bytes message's
    payloads are views of it (no copy), a mutable one's bytes were copied at once."""
    messages = [(PATTERN * 3)[:size] for size in sizes]
    gather, join = (XtransferProtocol(XtransferConfig(max_frame_size=frame)) for _ in "ab")
    buffers: list[bytes | memoryview] = []
    for message in messages:
        data = kind(bytearray(message)) if kind is not bytes else message
        gather.send_message(data)
        join.send_message(message)
        buffers += gather.buffers_to_send()
        if kind is not bytes:
            data[:] = b"\xff" * len(data)  # a mutable message was copied: this changes nothing
    assert b"".join(buffers) == join.data_to_send()
    assert gather.buffers_to_send() == []
    views = [buffer for buffer in buffers if isinstance(buffer, memoryview)]
    if kind is bytes:
        assert {id(view.obj) for view in views} <= {id(message) for message in messages}
        assert len(views) == sum(
            1 if size <= frame - 16 else -(-size // (frame - 16)) for size in sizes
        )
    else:
        assert not views


@given(
    st.lists(st.integers(0, 3000), min_size=1, max_size=8),
    st.integers(-3000, 3000),
    st.data(),
)
def test_hand_made_pieces_of_any_lengths_any_split(
    lengths: list[int], skew: int, data: st.DataObject
) -> None:
    """A MessageHead and MessageData packets of arbitrary lengths, the announced total right
    or off by ``skew``, followed by a Data packet, cut anywhere: the message and the Data
    packet when the pieces add up, else a framing error naming the shortfall or excess — never
    a wrong message, never a crash."""
    body = (PATTERN * 2)[: sum(lengths)]
    total = max(0, len(body) + skew)
    count = len(lengths)
    wire = [encode_packet(PacketType.MESSAGE_HEAD, 0, struct.pack("<QQII8x", total, 1, count, 0))]
    offset = 0
    for index, length in enumerate(lengths):
        piece = body[offset : offset + length]
        wire.append(encode_packet(PacketType.MESSAGE_DATA, index + 1, piece))
        offset += length
    wire.append(encode_packet(PacketType.DATA, count + 1, b"after"))
    receiver = XtransferProtocol()
    got: list[object] = []
    refused: XtransferError | None = None
    try:
        for chunk in data.draw(splits(b"".join(wire))):
            receiver.receive_data(chunk)
            got += events(receiver)
        receiver.receive_data(b"")
        got += events(receiver)
    except XtransferError as exc:
        refused = exc
    if total == len(body) and count <= total:
        assert refused is None
        assert got == [Message(body), Message(b"after"), ConnectionClosed()]
    else:
        assert isinstance(refused, XtransferFramingError), refused
        assert got == []  # no wrong message before the error
