"""The JSON stream codec shared by QMP and the guest agent."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from tests.strategies import json_objects, splits
from virtrio.channels._jsonstream import (
    NEED_DATA,
    ConnectionClosed,
    JsonStreamDecoder,
    JsonStreamError,
    encode_message,
)
from virtrio.errors import LocalProtocolError, ProtocolError


def drain(decoder: JsonStreamDecoder) -> list[dict[str, Any] | ConnectionClosed]:
    out: list[dict[str, Any] | ConnectionClosed] = []
    while (message := decoder.next_message()) is not NEED_DATA:
        assert isinstance(message, dict | ConnectionClosed)
        out.append(message)
    return out


@given(st.lists(json_objects, max_size=8), st.data())
def test_round_trip_at_any_split(messages: list[dict[str, Any]], data: st.DataObject) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    decoder = JsonStreamDecoder()
    received = []
    for chunk in data.draw(splits(wire)):
        decoder.receive_data(chunk)
        received += drain(decoder)
    assert received == messages
    assert decoder.buffered == 0


def test_qemu_line_endings_and_blank_lines() -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(b'{"a": 1}\r\n\r\n{"b": 2}\r\n{"c"')
    assert drain(decoder) == [{"a": 1}, {"b": 2}]
    decoder.receive_data(b": 3}\n")
    assert drain(decoder) == [{"c": 3}]


@given(st.lists(json_objects, min_size=1, max_size=4), st.binary(max_size=40), st.data())
def test_resync_marker_drops_only_the_unfinished_message(
    before: list[dict[str, Any]], junk: bytes, data: st.DataObject
) -> None:
    junk = junk.replace(b"\n", b"").replace(b"\xff", b"")
    wire = b"".join(encode_message(m) for m in before) + junk + b"\xff" + encode_message({"x": 1})
    decoder = JsonStreamDecoder()
    received = []
    for chunk in data.draw(splits(wire)):
        decoder.receive_data(chunk)
        received += drain(decoder)
    assert received == [*before, {"x": 1}]


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b"not json\n", "invalid JSON"),
        (b"[1, 2]\n", "expected a JSON object"),
        (b'"text"\n', "expected a JSON object"),
        (b'{"a": \xfe}\n', "invalid JSON"),
    ],
)
def test_garbage_is_a_protocol_error(wire: bytes, match: str) -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(wire)
    with pytest.raises(JsonStreamError, match=match) as info:
        decoder.next_message()
    assert isinstance(info.value, ProtocolError)


@given(st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_give_messages_or_a_clear_error(wire: bytes) -> None:
    decoder = JsonStreamDecoder(max_message_size=64)
    decoder.receive_data(wire)
    decoder.receive_data(b"")
    with contextlib.suppress(JsonStreamError):  # a clear error is fine; anything else fails
        assert drain(decoder)[-1] == ConnectionClosed()


def test_size_limit_bounds_an_unterminated_message() -> None:
    decoder = JsonStreamDecoder(max_message_size=100)
    decoder.receive_data(b'{"a": "' + b"x" * 90)
    assert decoder.next_message() is NEED_DATA
    decoder.receive_data(b"x" * 20)
    with pytest.raises(JsonStreamError, match="exceeds the limit of 100"):
        decoder.next_message()


def test_size_limit_on_a_complete_line() -> None:
    decoder = JsonStreamDecoder(max_message_size=10)
    decoder.receive_data(encode_message({"long": "y" * 20}))
    with pytest.raises(JsonStreamError, match="exceeds the limit"):
        decoder.next_message()


def test_messages_accepted_before_garbage_are_kept() -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(b'{"ok": 1}\n{bad\n')
    assert decoder.next_message() == {"ok": 1}
    with pytest.raises(JsonStreamError):
        decoder.next_message()


def test_eof_inside_a_message() -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(b'{"a": 1}\n{"b"')
    decoder.receive_data(b"")
    assert decoder.eof
    assert decoder.next_message() == {"a": 1}
    with pytest.raises(JsonStreamError, match="stream ended inside a message"):
        decoder.next_message()


@given(st.lists(json_objects, min_size=1, max_size=4), st.data())
def test_end_of_input_at_every_point(messages: list[dict[str, Any]], data: st.DataObject) -> None:
    wire = b"".join(encode_message(m) for m in messages)
    cut = data.draw(st.integers(0, len(wire)))
    decoder = JsonStreamDecoder()
    received = []
    for chunk in data.draw(splits(wire[:cut])):
        decoder.receive_data(chunk)
        received += drain(decoder)
    decoder.receive_data(b"")
    complete = wire[:cut].count(b"\n")
    if cut == 0 or wire[:cut].endswith(b"\n"):
        assert [*received, *drain(decoder)] == [*messages[:complete], ConnectionClosed()]
        assert decoder.next_message() is NEED_DATA  # reported once
    else:
        with pytest.raises(JsonStreamError, match="ended inside a message"):
            received += drain(decoder)
        assert received == messages[:complete]  # nothing accepted before is lost


def test_errors_are_sticky() -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(b'not json\n{"ok": 1}\n')
    with pytest.raises(JsonStreamError) as first:
        decoder.next_message()
    decoder.receive_data(b'{"ok": 2}\n')  # dropped: the stream cannot be trusted any more
    decoder.receive_data(b"")
    for _ in range(3):
        with pytest.raises(JsonStreamError) as again:
            decoder.next_message()
        assert again.value is first.value
    assert decoder.buffered == 0


def test_data_after_the_end_is_refused() -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the end"):
        decoder.receive_data(b"{}\n")
    assert decoder.next_message() == ConnectionClosed()


@given(st.text(), st.integers(), st.booleans())
def test_a_command_is_encoded_as_json_would(name: str, ident: int, with_arguments: bool) -> None:
    """The template for the commands' shape writes what the encoder would (any name, escaped)."""
    message: dict[str, Any] = {"execute": name, "id": ident}
    if with_arguments:
        message["arguments"] = {"name": name}
    wire = encode_message(message)
    assert wire == json.dumps(message, separators=(",", ":")).encode() + b"\n"
    decoder = JsonStreamDecoder()
    decoder.receive_data(wire)
    assert decoder.next_message() == message


@given(st.sampled_from([b"\r", b" ", b"\t", b" \r"]), json_objects)
def test_whitespace_after_an_object_is_allowed(tail: bytes, message: dict[str, Any]) -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(json.dumps(message).encode() + tail + b"\n")
    assert decoder.next_message() == message


@pytest.mark.parametrize(
    "line", [b'{"a": 1} x', b'{"a": 1}{"b": 2}', b'{"a": "\xff\xfe"}', b'{"a": 1\x0b', b"{"]
)
def test_an_object_followed_by_anything_else_is_refused(line: bytes) -> None:
    decoder = JsonStreamDecoder()
    decoder.receive_data(line + b"\n")
    with pytest.raises(ProtocolError, match="invalid JSON"):
        decoder.next_message()
