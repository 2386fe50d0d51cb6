"""The terminal daemon's frame codec: round trips at any split, and a specific error for every
kind of garbage."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, strategies as st

from tests.strategies import splits
from virtrio.channels.pty import (
    EVENT_TYPES,
    NEED_DATA,
    REQUEST_TYPES,
    Ack,
    Attach,
    BackpressureWarning,
    ConnectionClosed,
    Create,
    Created,
    CreateOptions,
    Detach,
    Error,
    Exit,
    FrameDecoder,
    FrameTooLargeError,
    Input,
    InvalidMessageError,
    InvalidMsgpackError,
    Kill,
    Level,
    List,
    Message,
    Ok,
    Output,
    PtyLocalProtocolError,
    PtyProtocolError,
    Resize,
    SessionInfo,
    Sessions,
    Signal,
    TruncatedFrameError,
    UnexpectedTypeError,
    UnknownTypeError,
    encode,
    encode_output,
)
from virtrio.channels.pty._codec import encode_input
from virtrio.errors import ProtocolError

u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
ids = st.none() | st.integers(0, 2**31)
text = st.text(max_size=12)
options = st.builds(
    CreateOptions,
    shell=st.none() | text,
    command=st.none() | text,
    args=st.lists(text, max_size=3).map(tuple),
    env=st.dictionaries(text, text, max_size=3),
    cwd=st.none() | text,
    cols=u16,
    rows=u16,
    console=st.none() | text,
)
infos = st.builds(
    SessionInfo,
    session=u32,
    kind=st.sampled_from(["pty", "console"]),
    command=text,
    pid=st.none() | st.integers(1, 2**22),
    cols=u16,
    rows=u16,
    created=st.floats(0, 2e9),
    last_attached=st.none() | st.floats(0, 2e9),
    attached=st.integers(0, 100),
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Create, options=options, id=ids),
    st.builds(Attach, session=u32, id=ids),
    st.builds(Detach, session=u32, id=ids),
    st.builds(Input, session=u32, data=st.binary(max_size=64), id=ids),
    st.builds(Resize, session=u32, cols=u16, rows=u16, id=ids),
    st.builds(Kill, session=u32, id=ids),
    st.builds(Signal, session=u32, signal=st.integers(1, 64) | text, id=ids),
    st.builds(Ack, session=st.none() | u32, count=st.none() | st.integers(0, 99), id=ids),
    st.builds(List, id=ids),
    st.builds(Created, session=u32, pid=st.none() | st.integers(1, 2**22), id=ids),
    st.builds(Sessions, sessions=st.lists(infos, max_size=3).map(tuple), id=ids),
    st.builds(Ok, id=ids),
    st.builds(Error, code=text, message=text, session=st.none() | u32, id=ids),
    st.builds(Output, session=u32, data=st.binary(max_size=64)),
    st.builds(
        Exit,
        session=u32,
        code=st.none() | st.integers(0, 255),
        signal=st.none() | st.integers(1, 64),
    ),
    st.builds(
        BackpressureWarning,
        session=u32,
        queue_size=st.integers(0, 2**20),
        level=st.sampled_from(Level),
        dropped=st.integers(0, 99),
    ),
)


def frame(payload: Any) -> bytes:
    raw = payload if isinstance(payload, bytes) else msgpack.packb(payload)
    return struct.pack(">I", len(raw)) + raw


def decode_all(wire: bytes, **options: Any) -> list[Message]:
    decoder = FrameDecoder(**options)
    decoder.receive_data(wire)
    out = []
    while (message := decoder.next_message()) is not NEED_DATA:
        out.append(message)
    return out


@given(st.lists(messages, max_size=6), st.data())
def test_round_trip_at_any_split(sent: list[Message], data: st.DataObject) -> None:
    wire = b"".join(encode(m) for m in sent)
    decoder = FrameDecoder()
    received: list[Message] = []
    for chunk in data.draw(splits(wire)):
        decoder.receive_data(chunk)
        while (message := decoder.next_message()) is not NEED_DATA:
            received.append(message)  # type: ignore[arg-type]
    assert received == sent
    assert decoder.buffered == 0


@given(st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_encode_output_is_encode_of_output(session: int, data: bytes) -> None:
    assert encode_output(session, data) == encode(Output(session, data))


@given(st.integers(0, 2**32 - 1), st.binary(max_size=300))
def test_encode_input_is_encode_of_input(session: int, data: bytes) -> None:
    assert encode_input(session, data) == encode(Input(session, data))
    assert encode_input(session, data * 300) == encode(Input(session, data * 300))


@pytest.mark.parametrize("size", [255, 256, 65535, 65536, 200_000])
@pytest.mark.parametrize("session", [1, 127, 128, 65536, 2**32 - 1])
def test_encode_output_at_every_bin_header_size(session: int, size: int) -> None:
    """bin 8, 16 and 32 headers, from bytes or a view of a buffer (what the reader hands)."""
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert encode_output(session, data) == encode(Output(session, data))
    assert encode_output(session, memoryview(bytearray(data))) == encode(Output(session, data))


def test_the_wire_is_the_seeds_internally_tagged_msgpack() -> None:
    wire = encode(BackpressureWarning(7, 12000, Level.YELLOW))
    assert struct.unpack(">I", wire[:4])[0] == len(wire) - 4
    assert msgpack.unpackb(wire[4:]) == {
        "type": "backpressure_warning",
        "session": 7,
        "queue_size": 12000,
        "level": "yellow",
        "dropped": 0,
    }
    payload = encode(Output(1, b"\x00\xff"))[4:]
    assert b"\xc4\x02\x00\xff" in payload  # data is MessagePack bin 8
    assert msgpack.unpackb(encode(Exit(3, None, 9))[4:]) == {
        "type": "exit",
        "session": 3,
        "code": None,
        "signal": 9,
    }


def test_a_seed_client_without_ids_and_with_string_or_array_data() -> None:
    wire = frame({"type": "create", "options": {"shell": "/bin/zsh", "cols": 80, "rows": 24}})
    wire += frame({"type": "input", "session": 1, "data": "ls -la\n"})
    wire += frame({"type": "input", "session": 1, "data": [104, 105]})
    wire += frame({"type": "ack", "session": 1, "count": 10, "future_field": True})
    assert decode_all(wire, accept=REQUEST_TYPES) == [
        Create(CreateOptions(shell="/bin/zsh")),
        Input(1, b"ls -la\n"),
        Input(1, b"hi"),
        Ack(1, 10),
    ]


@pytest.mark.parametrize(
    ("payload", "error", "words"),
    [
        (b"\xc1", InvalidMsgpackError, "not valid MessagePack"),
        (b"", InvalidMsgpackError, "not valid MessagePack"),
        (msgpack.packb({"type": "list"}) + b"\x00", InvalidMsgpackError, "not valid MessagePack"),
        ([1, 2], InvalidMessageError, "must be a map"),
        ({"session": 1}, InvalidMessageError, "string field 'type'"),
        ({"type": 5}, InvalidMessageError, "string field 'type'"),
        ({"type": "reboot", "id": 4}, UnknownTypeError, "unknown message type 'reboot'"),
        ({"type": "input", "data": b"x"}, InvalidMessageError, "input: missing field 'session'"),
        ({"type": "input", "session": "1", "data": b""}, InvalidMessageError, "'session' must be"),
        ({"type": "input", "session": -1, "data": b""}, InvalidMessageError, "unsigned 32-bit"),
        ({"type": "input", "session": 1, "data": 5}, InvalidMessageError, "'data' must be bytes"),
        ({"type": "input", "session": None, "data": b""}, InvalidMessageError, "got None"),
        ({"type": "resize", "session": 1, "cols": 70000, "rows": 1}, InvalidMessageError, "16"),
        ({"type": "create", "options": {"args": "ls"}}, InvalidMessageError, "'args' must be"),
        ({"type": "create", "options": []}, InvalidMessageError, "'options' must be a map"),
        ({"type": "output", "session": 1, "data": b""}, UnexpectedTypeError, "not accepted"),
    ],
)
def test_bad_payloads_get_a_specific_error_and_decoding_goes_on(
    payload: Any, error: type[PtyProtocolError], words: str
) -> None:
    decoder = FrameDecoder(accept=REQUEST_TYPES)
    decoder.receive_data(frame(payload) + encode(List(id=9)))
    with pytest.raises(error, match=words) as info:
        decoder.next_message()
    assert isinstance(info.value, ProtocolError)
    assert not info.value.fatal
    assert decoder.next_message() == List(id=9)  # the bad frame was consumed, nothing else


def test_the_request_id_is_kept_for_the_error_reply() -> None:
    decoder = FrameDecoder(accept=REQUEST_TYPES)
    decoder.receive_data(frame({"type": "kill", "session": "x", "id": 42}))
    with pytest.raises(InvalidMessageError) as info:
        decoder.next_message()
    assert info.value.request_id == 42
    assert info.value.code.value == "invalid_message"


def test_an_oversize_length_is_fatal_before_the_payload_arrives() -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    decoder.receive_data(struct.pack(">I", 1025))
    with pytest.raises(FrameTooLargeError, match="1025 bytes exceeds the limit of 1024") as info:
        decoder.next_message()
    assert info.value.fatal


def test_end_of_stream_inside_a_frame() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode(List())[:-1])
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"")
    with pytest.raises(TruncatedFrameError, match="ended inside a frame"):
        decoder.next_message()
    clean = FrameDecoder()
    clean.receive_data(b"")
    assert clean.next_message() == ConnectionClosed()
    assert clean.next_message() is NEED_DATA  # reported once


def test_a_client_accepts_only_events() -> None:
    assert decode_all(encode(Ok(1)), accept=EVENT_TYPES) == [Ok(1)]
    with pytest.raises(UnexpectedTypeError):
        decode_all(encode(Kill(1)), accept=EVENT_TYPES)


@given(st.binary(max_size=200), st.data())
def test_garbage_never_escapes_as_anything_but_a_protocol_error(
    garbage: bytes, data: st.DataObject
) -> None:
    decoder = FrameDecoder(max_frame_size=4096, accept=REQUEST_TYPES)
    try:
        for chunk in data.draw(splits(garbage)):
            decoder.receive_data(chunk)
            while True:
                try:
                    if decoder.next_message() is NEED_DATA:
                        break
                except PtyProtocolError as exc:
                    if exc.fatal:
                        raise
        decoder.receive_data(b"")
        while decoder.next_message() is not NEED_DATA:
            pass
    except PtyProtocolError:
        pass


@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_end_of_input_at_every_point(sent: list[Message], data: st.DataObject) -> None:
    frames = [encode(m) for m in sent]
    wire = b"".join(frames)
    cut = data.draw(st.integers(0, len(wire)))
    bounds = {sum(map(len, frames[:n])) for n in range(len(frames) + 1)}
    decoder = FrameDecoder()
    received: list[Any] = []
    for chunk in data.draw(splits(wire[:cut])):
        decoder.receive_data(chunk)
        while (message := decoder.next_message()) is not NEED_DATA:
            received.append(message)
    decoder.receive_data(b"")
    complete = max(n for n in range(len(frames) + 1) if sum(map(len, frames[:n])) <= cut)
    if cut in bounds:
        while (message := decoder.next_message()) is not NEED_DATA:
            received.append(message)
        assert received == [*sent[:complete], ConnectionClosed()]
        with pytest.raises(PtyLocalProtocolError, match="after the end"):
            decoder.receive_data(b"\0")
    else:
        with pytest.raises(TruncatedFrameError):
            decoder.next_message()
        assert received == sent[:complete]  # nothing accepted before is lost


def test_a_fatal_error_is_sticky() -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    decoder.receive_data(encode(List(id=1)) + struct.pack(">I", 5000) + encode(List(id=2)))
    assert decoder.next_message() == List(id=1)
    with pytest.raises(FrameTooLargeError) as first:
        decoder.next_message()
    decoder.receive_data(encode(List(id=3)))  # dropped: no frame boundary can be trusted
    decoder.receive_data(b"")
    for _ in range(3):
        with pytest.raises(FrameTooLargeError) as again:
            decoder.next_message()
        assert again.value is first.value
    assert decoder.buffered == 0


def _raw_map(items: list[tuple[bytes, bytes]]) -> bytes:
    return bytes([0x80 | len(items)]) + b"".join(k + v for k, v in items)


# Raw MessagePack values, built by hand so that map keys can be anything (arrays, maps, bin,
# floats, nil): what a hostile client sends, not what msgpack.packb would produce from Python.
raw_msgpack: st.SearchStrategy[bytes] = st.recursive(
    (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats())
    .map(msgpack.packb)
    .map(bytes)
    | st.text(max_size=10).map(lambda s: bytes(msgpack.packb(s)))
    | st.binary(max_size=10).map(lambda b: bytes(msgpack.packb(b)))
    | st.sampled_from([b"\xa4type", b"\xa5input", b"\xa7session", b"\xa4data", b"\xa2id"]),
    lambda children: (
        st.lists(children, max_size=4).map(lambda xs: bytes([0x90 | len(xs)]) + b"".join(xs))
        | st.lists(st.tuples(children, children), max_size=4).map(_raw_map)
    ),
    max_leaves=10,
)


@given(st.lists(raw_msgpack | st.binary(max_size=40), max_size=6), st.data())
def test_random_frames_give_messages_or_our_own_errors_and_decoding_goes_on(
    payloads: list[bytes], data: st.DataObject
) -> None:
    """Every well-framed payload, whatever it holds, is a message or a non-fatal
    PtyProtocolError; nothing else (a TypeError from msgpack) ever comes out."""
    wire = b"".join(struct.pack(">I", len(p)) + p for p in payloads)
    decoder = FrameDecoder(accept=REQUEST_TYPES)
    outcomes: list[object] = []
    for chunk in data.draw(splits(wire)):
        decoder.receive_data(chunk)
        while True:
            try:
                if (message := decoder.next_message()) is NEED_DATA:
                    break
                outcomes.append(message)
            except PtyProtocolError as exc:
                outcomes.append(exc)
    assert len(outcomes) == len(payloads)
    assert not [o for o in outcomes if isinstance(o, PtyProtocolError) and o.fatal]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "payload", [b"\x81\x90\x00", b"\x81\x80\x00", b"\x82\xa4type\xa4kill\x91\x01\x00"]
)
def test_a_map_with_an_array_or_map_key_is_invalid_msgpack(payload: bytes) -> None:
    decoder = FrameDecoder()
    decoder.receive_data(struct.pack(">I", len(payload)) + payload + encode(Ok(1)))
    with pytest.raises(InvalidMsgpackError, match="not valid MessagePack"):
        decoder.next_message()
    assert decoder.next_message() == Ok(1)
