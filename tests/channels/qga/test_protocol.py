"""The sans-I/O guest-agent core."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from tests.strategies import json_values, splits
from virtrio.channels._jsonstream import NEED_DATA, Reply
from virtrio.channels._sansio import ConnectionClosed
from virtrio.channels.qga import QgaLocalProtocolError, QgaProtocol, QgaProtocolError


def synced() -> QgaProtocol:
    """A core past its first resynchronisation marker (before it, every byte is stale)."""
    protocol = QgaProtocol()
    protocol.receive_data(b"\xff")
    return protocol


def replies(protocol: QgaProtocol) -> list[Reply | ConnectionClosed]:
    out: list[Reply | ConnectionClosed] = []
    while (event := protocol.next_event()) is not NEED_DATA:
        assert isinstance(event, Reply | ConnectionClosed)
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
    got: list[Reply | ConnectionClosed] = []
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
    got: list[Reply | ConnectionClosed] = []
    for chunk in data.draw(splits(wire)):
        protocol.receive_data(chunk)
        got += replies(protocol)
    assert got == [Reply(1, True, token)]


@given(st.binary(max_size=300))
def test_garbage_gives_replies_or_a_clear_error(wire: bytes) -> None:
    protocol = synced()
    protocol.receive_data(wire)
    protocol.receive_data(b"")
    with contextlib.suppress(QgaProtocolError):  # a clear error, or the end of input
        assert replies(protocol)[-1] == ConnectionClosed()


REPLIES = b'\xff{"return": 1, "id": 1}\n{"return": {}}\n\xff{"return": 3, "id": 3}\n'


@given(st.integers(0, len(REPLIES)), st.data())
def test_end_of_input_at_every_point(cut: int, data: st.DataObject) -> None:
    protocol = QgaProtocol()
    got: list[Reply | ConnectionClosed] = []
    for chunk in data.draw(splits(REPLIES[:cut])):
        protocol.receive_data(chunk)
        got += replies(protocol)
    protocol.receive_data(b"")
    tail = REPLIES[:cut].rsplit(b"\xff", 1)[-1]  # a resync marker drops what precedes it
    if not tail or tail.endswith(b"\n"):
        got += replies(protocol)
        assert got[-1] == ConnectionClosed()
        assert replies(protocol) == []  # reported once
        assert protocol.is_closed
        with pytest.raises(QgaLocalProtocolError, match="closed"):
            protocol.send_command("guest-ping")
        with pytest.raises(QgaLocalProtocolError, match="after the end"):
            protocol.receive_data(b"{}")
    else:
        with pytest.raises(QgaProtocolError, match="ended inside a message"):
            replies(protocol)
    assert all(isinstance(r, ConnectionClosed) or r.id in (1, 3) for r in got)


def test_errors_are_sticky() -> None:
    protocol = synced()
    protocol.receive_data(b'{"return": 1, "id": 1}\n[]\n{"return": 2, "id": 2}\n')
    assert protocol.next_event() == Reply(1, True, 1)
    with pytest.raises(QgaProtocolError, match="expected a JSON object") as first:
        protocol.next_event()
    for _ in range(3):
        with pytest.raises(QgaProtocolError) as again:
            protocol.next_event()
        assert again.value is first.value
    assert protocol.error is first.value
    with pytest.raises(QgaLocalProtocolError, match="failed: expected a JSON object"):
        protocol.send_command("guest-ping")
