"""The sans-I/O QMP core."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st

from tests.strategies import json_objects, splits
from virtrio.channels._jsonstream import NEED_DATA
from virtrio.channels._rpc import Reply
from virtrio.channels.qmp import QemuVersion, QmpEvent, QmpGreeting, QmpProtocol, QmpProtocolError

GREETING = (
    b'{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, '
    b'"package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}\r\n'
)


def events(protocol: QmpProtocol) -> list[Any]:
    out = []
    while (event := protocol.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def greeted() -> QmpProtocol:
    protocol = QmpProtocol()
    protocol.receive_data(GREETING)
    events(protocol)
    return protocol


def test_greeting() -> None:
    protocol = QmpProtocol()
    protocol.receive_data(GREETING)
    assert events(protocol) == [
        QmpGreeting(QemuVersion(7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18+b3"), ("oob",))
    ]
    assert str(protocol.greeting.version) == "7.2.22"  # type: ignore[union-attr]


def test_commands_are_numbered() -> None:
    protocol = greeted()
    first, data = protocol.send_command("query-status")
    second, data2 = protocol.send_command("send-key", {"keys": []})
    assert first != second
    assert json.loads(data) == {"execute": "query-status", "id": first}
    assert json.loads(data2) == {"execute": "send-key", "id": second, "arguments": {"keys": []}}
    _, oob = protocol.send_command("x", oob=True)
    assert "exec-oob" in json.loads(oob)


def test_replies_errors_and_events() -> None:
    protocol = greeted()
    protocol.receive_data(
        b'{"timestamp": {"seconds": 1700000000, "microseconds": 500000}, "event": "STOP"}\r\n'
        b'{"return": {}, "id": 1}\r\n'
        b'{"id": 2, "error": {"class": "CommandNotFound", '
        b'"desc": "The command x has not been found"}}\r\n'
    )
    assert events(protocol) == [
        QmpEvent("STOP", {}, 1700000000.5),
        Reply(1, True, {}),
        Reply(2, False, None, "CommandNotFound", "The command x has not been found"),
    ]


@given(st.lists(st.tuples(st.integers(1, 10**6), json_objects), max_size=6), st.data())
def test_replies_at_any_split(
    replies: list[tuple[int, dict[str, Any]]], data: st.DataObject
) -> None:
    wire = GREETING + b"".join(
        json.dumps({"return": value, "id": ident}).encode() + b"\r\n" for ident, value in replies
    )
    protocol = QmpProtocol()
    got: list[Any] = []
    for chunk in data.draw(splits(wire)):
        protocol.receive_data(chunk)
        got += events(protocol)
    assert got[1:] == [Reply(i, True, v) for i, v in replies]


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b'{"return": {}, "id": 1}\n', "expected the QMP greeting"),
        (b'{"QMP": {"version": {}, "capabilities": []}}\n', "malformed QMP version"),
        (
            b'{"QMP": {"version": {"qemu": {"major": 1, "minor": 2, "micro": 3}}, '
            b'"capabilities": 5}}\n',
            "malformed QMP greeting",
        ),
    ],
)
def test_bad_greetings(wire: bytes, match: str) -> None:
    protocol = QmpProtocol()
    protocol.receive_data(wire)
    with pytest.raises(QmpProtocolError, match=match):
        events(protocol)


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b'{"return": {}}\n', "reply without an id"),
        (b'{"error": "boom", "id": 1}\n', "malformed QMP error"),
        (b'{"event": 5}\n', "malformed QMP event"),
        (b'{"event": "X", "timestamp": {"seconds": "soon"}}\n', "timestamp"),
        (b'{"something": "else"}\n', "unexpected QMP message"),
        (b"garbage\n", "invalid JSON"),
    ],
)
def test_bad_messages(wire: bytes, match: str) -> None:
    protocol = greeted()
    protocol.receive_data(wire)
    with pytest.raises(QmpProtocolError, match=match):
        events(protocol)


@given(st.binary(max_size=300))
def test_garbage_gives_events_or_a_clear_error(wire: bytes) -> None:
    protocol = greeted()
    protocol.receive_data(wire)
    protocol.receive_data(b"")
    with contextlib.suppress(QmpProtocolError):  # a clear error is fine; anything else fails
        events(protocol)
