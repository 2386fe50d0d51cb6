"""The schema's fast paths for ``input`` and ``output`` payloads agree with the general path
(MessagePack, then the schema) on every payload: the ones this package encodes, the same maps
as any MessagePack encoder may lay them out, and any corruption of either."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, strategies as st

from virtrio.channels.pty import (
    EVENT_TYPES,
    REQUEST_TYPES,
    Input,
    Output,
    PtyProtocolError,
    UnexpectedTypeError,
    _schema as schema,
    encode_output,
)
from virtrio.channels.pty._codec import encode_input
from virtrio.channels.pty._schema import decode_map, decode_payload

sessions = st.one_of(
    st.integers(0, 0x7F), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.just(0x80)
)
# sizes across the bin8/bin16 and bin16/bin32 boundaries too
datas = st.one_of(
    st.binary(max_size=300),
    st.integers(0xFF, 0x101).map(bytes),
    st.integers(0xFFFF, 0x10001).map(lambda n: b"x" * n),
)
encoders = st.sampled_from([(encode_output, Output), (encode_input, Input)])


def _outcome(decode: object, payload: bytes, accept: object = None) -> object:
    try:
        return decode(payload, accept)  # type: ignore[operator]
    except PtyProtocolError as exc:
        return type(exc), str(exc)


@given(encoders, sessions, datas)
def test_an_encoded_frame_decodes_to_its_message(
    encoder: tuple[object, type[Input] | type[Output]], session: int, data: bytes
) -> None:
    encode, cls = encoder
    payload = encode(session, data)[4:]  # type: ignore[operator]
    assert decode_payload(payload) == cls(session, data)
    assert decode_map(payload) == cls(session, data)
    assert decode_payload(memoryview(payload)) == cls(session, data)


@given(encoders, sessions, datas, st.data())
def test_any_corruption_decodes_as_the_general_path_decodes_it(
    encoder: tuple[object, type[Input] | type[Output]],
    session: int,
    data: bytes,
    draw: st.DataObject,
) -> None:
    encode, _cls = encoder
    payload = bytearray(encode(session, data)[4:])  # type: ignore[operator]
    action = draw.draw(st.sampled_from(["flip", "cut", "extend"]))
    if action == "flip":
        at = draw.draw(st.integers(0, len(payload) - 1))
        payload[at] = draw.draw(st.integers(0, 255))
    elif action == "cut":
        del payload[draw.draw(st.integers(0, len(payload) - 1)) :]
    else:
        payload += draw.draw(st.binary(min_size=1, max_size=8))
    wire = bytes(payload)
    for accept in (None, REQUEST_TYPES, EVENT_TYPES):
        assert _outcome(decode_payload, wire, accept) == _outcome(decode_map, wire, accept)


@given(sessions, st.binary(max_size=64), st.booleans())
def test_the_same_map_laid_out_otherwise_decodes_the_same(
    session: int, data: bytes, with_id: bool
) -> None:
    # key order, an id, a session packed wider than it needs: the general path takes them
    wire = {"data": data, "session": session, "type": "input"}
    if with_id:
        wire["id"] = 7
    payload = msgpack.packb(wire, use_bin_type=True)
    assert decode_payload(payload) == Input(session, data, id=7 if with_id else None)
    wide = b"\x83\xa4type\xa6output\xa7session\xcf" + session.to_bytes(8, "big")
    wide += b"\xa4data\xc4" + bytes([len(data)]) + data
    assert decode_payload(wide) == decode_map(wide) == Output(session, data)


def test_a_fast_path_frame_of_a_type_not_accepted_is_refused() -> None:
    with pytest.raises(UnexpectedTypeError):
        decode_payload(encode_output(1, b"x")[4:], REQUEST_TYPES)
    with pytest.raises(UnexpectedTypeError):
        decode_payload(encode_input(1, b"x")[4:], EVENT_TYPES)


@given(encoders, sessions, datas)
def test_encoded_input_and_output_need_no_msgpack(
    encoder: tuple[object, type[Input] | type[Output]], session: int, data: bytes
) -> None:
    encode, cls = encoder
    payload = encode(session, data)[4:]  # type: ignore[operator]
    real = schema.msgpack.unpackb
    schema.msgpack.unpackb = None  # type: ignore[assignment]  # (a call would fail)
    try:
        assert decode_payload(payload) == cls(session, data)
    finally:
        schema.msgpack.unpackb = real
