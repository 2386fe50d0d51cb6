"""The sans-I/O guest-agent core."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from tests.strategies import json_values, splits
from virtrio.channels._jsonstream import NEED_DATA
from virtrio.channels._rpc import Reply
from virtrio.channels.qga import QgaProtocol, QgaProtocolError


def synced() -> QgaProtocol:
    """A core past its first resynchronisation marker (before it, every byte is stale)."""
    protocol = QgaProtocol()
    protocol.receive_data(b"\xff")
    return protocol


def replies(protocol: QgaProtocol) -> list[Reply]:
    out = []
    while (event := protocol.next_event()) is not NEED_DATA:
        assert isinstance(event, Reply)
        out.append(event)
    return out


def test_commands_and_sync_tokens_are_unique() -> None:
    protocol = QgaProtocol()
    ident, data = protocol.send_command("guest-exec", {"path": "/bin/true"})
    token = protocol.sync_token()
    assert token != ident
    assert json.loads(data) == {
        "execute": "guest-exec",
        "id": ident,
        "arguments": {"path": "/bin/true"},
    }


def test_sync_reply_after_stale_bytes() -> None:
    protocol = QgaProtocol()
    # a previous client's half-sent reply, then the delimited answer to our sync
    protocol.receive_data(b'{"return": {"pid": 12}, "i')
    protocol.receive_data(b'\xff{"return": 7, "id": 7}\n')
    assert replies(protocol) == [Reply(7, True, 7)]


def test_replies_without_id_are_dropped() -> None:
    protocol = synced()
    protocol.receive_data(
        b'{"return": {}}\n{"error": {"class": "GenericError", "desc": "x"}, "id": 3}\n'
    )
    assert replies(protocol) == [Reply(3, False, None, "GenericError", "x")]


@pytest.mark.parametrize(
    ("wire", "match"),
    [(b'{"id": 1, "surprise": true}\n', "unexpected"), (b"\x00\x01\n", "invalid JSON")],
)
def test_bad_messages(wire: bytes, match: str) -> None:
    protocol = synced()
    protocol.receive_data(wire)
    with pytest.raises(QgaProtocolError, match=match):
        replies(protocol)


@given(st.lists(json_values, max_size=6), st.binary(max_size=30), st.data())
def test_replies_at_any_split_after_a_resync(
    values: list[Any], junk: bytes, data: st.DataObject
) -> None:
    junk = junk.replace(b"\n", b"").replace(b"\xff", b"")
    wire = (
        junk
        + b"\xff"
        + b"".join(
            json.dumps({"return": v, "id": i}).encode() + b"\n" for i, v in enumerate(values)
        )
    )
    protocol = QgaProtocol()
    got: list[Reply] = []
    for chunk in data.draw(splits(wire)):
        protocol.receive_data(chunk)
        got += replies(protocol)
    assert got == [Reply(i, True, v) for i, v in enumerate(values)]


@given(
    st.binary(max_size=2000).map(lambda b: b.replace(b"\xff", b"")),
    st.integers(1, 2**31),
    st.data(),
)
def test_anything_before_the_first_sentinel_is_discarded(
    stale: bytes, token: int, data: st.DataObject
) -> None:
    """qga/qapi-schema.json (guest-sync-delimited): until the sync reply, everything the agent
    sent is ignored: complete lines, JSON or not, replies with ids we are about to use."""
    lines = data.draw(st.lists(json_values, max_size=3))
    stale += b"".join(json.dumps({"return": v, "id": 1}).encode() + b"\n" for v in lines)
    wire = stale + b"\xff" + json.dumps({"return": token, "id": 1}).encode() + b"\n"
    protocol = QgaProtocol()
    got: list[Reply] = []
    for chunk in data.draw(splits(wire)):
        protocol.receive_data(chunk)
        got += replies(protocol)
    assert got == [Reply(1, True, token)]


@given(st.binary(max_size=300))
def test_garbage_gives_replies_or_a_clear_error(wire: bytes) -> None:
    protocol = synced()
    protocol.receive_data(wire)
    with contextlib.suppress(QgaProtocolError):
        replies(protocol)
