"""The sans-I/O QMP core."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.strategies import json_objects, splits
from virtrio.channels._jsonstream import NEED_DATA, Reply
from virtrio.channels._sansio import ConnectionClosed
from virtrio.channels.qmp import (
    QemuVersion,
    QmpEvent,
    QmpGreeting,
    QmpLocalProtocolError,
    QmpProtocol,
    QmpProtocolError,
    QmpState,
)

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
    """A core that received the greeting and negotiated: READY."""
    protocol = QmpProtocol()
    protocol.receive_data(GREETING)
    events(protocol)
    ident, _ = protocol.send_command("qmp_capabilities")
    protocol.receive_data(b'{"return": {}, "id": %d}\r\n' % ident)
    assert events(protocol) == [Reply(ident, True, {})]
    assert protocol.state is QmpState.READY
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
    assert protocol.state is QmpState.NEGOTIATING  # no qmp_capabilities was sent


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
        got = events(protocol)
        assert got[-1] == ConnectionClosed()  # no error: the end of input is reported
        assert protocol.state is QmpState.CLOSED


# --- the end of input, sticky errors, forbidden commands ----------------------------------

SESSION = (
    GREETING
    + b'{"return": {}, "id": 1}\r\n'
    + b'{"timestamp": {"seconds": 1, "microseconds": 0}, "event": "STOP"}\r\n'
    + b'{"return": {"status": "paused"}, "id": 2}\r\n'
)


@given(st.integers(0, len(SESSION)), st.data())
def test_end_of_input_at_every_point(cut: int, data: st.DataObject) -> None:
    protocol = QmpProtocol()
    got: list[Any] = []
    wire = SESSION[:cut]
    # QEMU answers qmp_capabilities only once it was sent: after the greeting
    for chunk in data.draw(splits(wire[: len(GREETING)])):
        protocol.receive_data(chunk)
        got += events(protocol)
    if protocol.state is QmpState.NEGOTIATING:
        assert protocol.send_command("qmp_capabilities")[0] == 1
    for chunk in data.draw(splits(wire[len(GREETING) :])):
        protocol.receive_data(chunk)
        got += events(protocol)
    protocol.receive_data(b"")
    at_boundary = cut == 0 or SESSION[:cut].endswith(b"\n")
    if at_boundary:
        got += events(protocol)
        assert got[-1] == ConnectionClosed()
        assert protocol.state is QmpState.CLOSED
        assert events(protocol) == []  # reported once
        with pytest.raises(QmpLocalProtocolError, match="closed"):
            protocol.send_command("query-status")
        with pytest.raises(QmpLocalProtocolError, match="after the end"):
            protocol.receive_data(b"{}")
    else:
        with pytest.raises(QmpProtocolError, match="ended inside a message"):
            events(protocol)
        assert protocol.state is QmpState.ERROR


def test_errors_are_sticky_and_keep_what_came_before() -> None:
    protocol = greeted()
    protocol.receive_data(b'{"return": 1, "id": 7}\r\nnot json\r\n{"return": 2, "id": 8}\r\n')
    assert protocol.next_event() == Reply(7, True, 1)
    with pytest.raises(QmpProtocolError, match="invalid JSON") as first:
        protocol.next_event()
    for _ in range(3):  # the same error, however often asked; what followed is never parsed
        with pytest.raises(QmpProtocolError) as again:
            protocol.next_event()
        assert again.value is first.value
    protocol.receive_data(b'{"return": 3, "id": 9}\r\n')
    with pytest.raises(QmpProtocolError):
        protocol.next_event()
    assert protocol.state is QmpState.ERROR
    assert protocol.error is first.value
    with pytest.raises(QmpLocalProtocolError, match="error: invalid JSON"):
        protocol.send_command("query-status")


def test_ids_are_reused_once_answered_and_never_while_a_reply_may_come() -> None:
    protocol = greeted()
    a, _ = protocol.send_command("query-status")
    b, _ = protocol.send_command("query-status")
    c, _ = protocol.send_command("query-status")
    assert len({a, b, c}) == 3
    assert protocol.unanswered == {a, b, c}
    protocol.receive_data(b'{"return": {}, "id": %d}\r\n' % b)
    assert events(protocol) == [Reply(b, True, {})]
    assert protocol.unanswered == {a, c}
    again, wire = protocol.send_command("query-name")
    assert again == b  # the smallest free id, so ids stay short on the wire
    assert wire == b'{"execute":"query-name","id":%d}\n' % b
    fresh, _ = protocol.send_command("query-name")
    assert fresh not in {a, b, c}
    # a second reply for an id, or one never handed out, frees nothing
    protocol.receive_data(b'{"return": {}, "id": 99}\r\n{"return": {}, "id": "x"}\r\n')
    events(protocol)
    assert protocol.unanswered == {a, b, c, fresh}


def test_release_gives_back_the_id_of_a_command_never_sent() -> None:
    protocol = greeted()
    first, _ = protocol.send_command("query-status")
    protocol.release(first)
    assert protocol.unanswered == set()
    assert protocol.send_command("query-status")[0] == first
    protocol.release(12345)  # not handed out: nothing changes
    assert protocol.unanswered == {first}


def test_commands_the_state_forbids_are_refused() -> None:
    protocol = QmpProtocol()
    with pytest.raises(QmpLocalProtocolError, match="awaiting greeting"):
        protocol.send_command("qmp_capabilities")
    protocol.receive_data(GREETING)
    events(protocol)
    with pytest.raises(QmpLocalProtocolError, match="only qmp_capabilities"):
        protocol.send_command("query-status")
    ident, _ = protocol.send_command("qmp_capabilities")
    with pytest.raises(QmpLocalProtocolError, match="already pending"):
        protocol.send_command("qmp_capabilities")
    # a refused negotiation leaves the connection negotiating: it may try again
    protocol.receive_data(b'{"error": {"class": "GenericError", "desc": "no"}, "id": %d}\n' % ident)
    assert events(protocol) == [Reply(ident, False, None, "GenericError", "no")]
    assert protocol.state is QmpState.NEGOTIATING
    again, _ = protocol.send_command("qmp_capabilities", {"enable": ["oob"]})
    protocol.receive_data(b'{"return": {}, "id": %d}\n' % again)
    events(protocol)
    assert protocol.state is QmpState.READY
    protocol.send_command("query-status")  # anything goes now


def test_an_event_between_qmp_capabilities_and_its_reply_is_delivered() -> None:
    """QEMU switches out of negotiation mode while it runs qmp_capabilities, so an event can be
    written before the command's reply (seen with a guest redrawing its screen)."""
    protocol = QmpProtocol()
    protocol.receive_data(GREETING)
    events(protocol)
    ident, _ = protocol.send_command("qmp_capabilities")
    protocol.receive_data(b'{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\n')
    protocol.receive_data(b'{"return": {}, "id": %d}\n' % ident)
    got = events(protocol)
    assert [type(e) for e in got] == [QmpEvent, Reply]
    assert protocol.state is QmpState.READY


@given(st.data())
def test_an_event_before_the_greeting_is_delivered_and_the_greeting_still_awaited(
    data: st.DataObject,
) -> None:
    """QEMU resets a monitor to negotiation mode only when it handles the next client's
    connection: an event emitted meanwhile (the previous client's ``cont``) reaches the new
    client before its greeting (seen in CI)."""
    wire = (
        b'{"timestamp": {"seconds": 7, "microseconds": 250000}, "event": "RESUME"}\r\n' + GREETING
    )
    protocol = QmpProtocol()
    got: list[Any] = []
    for chunk in data.draw(splits(wire)):
        protocol.receive_data(chunk)
        got += events(protocol)
        if got == [QmpEvent("RESUME", {}, 7.25)]:
            assert protocol.state is QmpState.AWAITING_GREETING
            with pytest.raises(QmpLocalProtocolError, match="awaiting greeting"):
                protocol.send_command("qmp_capabilities")
    assert got == [QmpEvent("RESUME", {}, 7.25), GREETED]
    assert protocol.state is QmpState.NEGOTIATING


@pytest.mark.parametrize(
    ("wire", "match"),
    [
        (b'{"event": 5, "timestamp": {}}\n', "malformed QMP event"),
        (b'{"event": "STOP", "QMP": {}}\n', "malformed QMP version"),
    ],
)
def test_a_bad_event_before_the_greeting_is_an_error(wire: bytes, match: str) -> None:
    protocol = QmpProtocol()
    protocol.receive_data(wire + GREETING)
    with pytest.raises(QmpProtocolError, match=match):
        events(protocol)
    assert protocol.state is QmpState.ERROR


@pytest.mark.parametrize(
    ("state", "wire", "match"),
    [
        ("negotiating", b'{"event": "STOP", "timestamp": {}}\n', "event while .* negotiating"),
        ("negotiating", GREETING, "unexpected QMP message"),
        ("ready", GREETING, "unexpected QMP message"),
    ],
)
def test_messages_the_state_forbids_are_errors(state: str, wire: bytes, match: str) -> None:
    protocol = greeted() if state == "ready" else QmpProtocol()
    if state == "negotiating":
        protocol.receive_data(GREETING)
        events(protocol)
    protocol.receive_data(wire)
    with pytest.raises(QmpProtocolError, match=match):
        events(protocol)
    assert protocol.state is QmpState.ERROR


# --- the state machine against a model of QEMU ----------------------------------------------

GREETED = QmpGreeting(QemuVersion(7, 2, 22, "Debian 1:7.2+dfsg-7+deb12u18+b3"), ("oob",))


class QmpMachine(RuleBasedStateMachine):
    """The core between a client that sends what it likes and a QEMU that keeps the protocol;
    QEMU's bytes reach the core in arbitrary pieces. The model's own idea of the state, from
    the events delivered, must always be the core's."""

    def __init__(self) -> None:
        super().__init__()
        self.core = QmpProtocol()
        self.state = QmpState.AWAITING_GREETING  # what the client has seen so far
        self.negotiation: int | None = None
        self.wire = bytearray()  # sent by QEMU, not yet received
        self.expected: list[Any] = []  # the events those bytes hold, in order
        self.inbox: list[tuple[int, str]] = []  # commands QEMU has not answered yet
        self.greeted = self.qemu_negotiated = self.ended = False
        self.unanswered: set[int] = set()  # ids sent whose reply the core has not delivered

    def _qemu_sends(self, message: bytes, event: Any) -> None:
        self.wire += message
        self.expected.append(event)

    @precondition(lambda self: not self.greeted and not self.ended)
    @rule()
    def qemu_greets(self) -> None:
        self.greeted = True
        self._qemu_sends(GREETING, GREETED)

    @rule(command=st.sampled_from(["qmp_capabilities", "query-status", "stop"]))
    def client_sends(self, command: str) -> None:
        allowed = self.state is QmpState.READY or (
            self.state is QmpState.NEGOTIATING
            and command == "qmp_capabilities"
            and self.negotiation is None
        )
        if not allowed:
            with pytest.raises(QmpLocalProtocolError):
                self.core.send_command(command)
            return
        ident, wire = self.core.send_command(command)
        assert json.loads(wire) == {"execute": command, "id": ident}
        # an id numbers one command at a time: never one whose reply is still to come
        assert ident not in self.unanswered
        self.unanswered.add(ident)
        assert self.core.unanswered == self.unanswered
        if self.state is QmpState.NEGOTIATING:
            self.negotiation = ident
        if not self.ended:
            self.inbox.append((ident, command))

    @precondition(lambda self: self.inbox and not self.ended)
    @rule(ok=st.booleans())
    def qemu_answers(self, ok: bool) -> None:
        ident, command = self.inbox.pop(0)
        if command == "qmp_capabilities" and ok and not self.qemu_negotiated:
            self.qemu_negotiated = True
        elif command == "qmp_capabilities" and self.qemu_negotiated:
            ok = False  # QEMU: "Capabilities negotiation is already complete"
        if ok:
            self._qemu_sends(b'{"return": {}, "id": %d}\r\n' % ident, Reply(ident, True, {}))
        else:
            self._qemu_sends(
                b'{"id": %d, "error": {"class": "GenericError", "desc": "no"}}\r\n' % ident,
                Reply(ident, False, None, "GenericError", "no"),
            )

    @precondition(lambda self: (self.qemu_negotiated or not self.greeted) and not self.ended)
    @rule(name=st.sampled_from(["STOP", "RESUME"]))
    def qemu_emits(self, name: str) -> None:
        """Once negotiated; or before the greeting, while the monitor is still in the previous
        client's command mode."""
        self._qemu_sends(
            b'{"event": "%s", "data": {}, "timestamp": {"seconds": 5, "microseconds": 0}}\r\n'
            % name.encode(),
            QmpEvent(name, {}, 5.0),
        )

    @rule(data=st.data())
    def bytes_arrive(self, data: st.DataObject) -> None:
        count = data.draw(st.integers(0, len(self.wire)))
        if count:
            self.core.receive_data(bytes(self.wire[:count]))
            del self.wire[:count]
        self._deliver()

    @precondition(lambda self: not self.ended)
    @rule()
    def qemu_closes(self) -> None:
        self.ended = True
        self.expected.append(ConnectionClosed())
        self.core.receive_data(bytes(self.wire))
        self.wire.clear()
        self.core.receive_data(b"")
        self._deliver()
        assert self.state is QmpState.CLOSED

    def _deliver(self) -> None:
        for event in events(self.core):
            assert event == self.expected.pop(0)
            if isinstance(event, Reply):
                self.unanswered.discard(event.id)
            if isinstance(event, QmpGreeting):
                self.state = QmpState.NEGOTIATING
            elif isinstance(event, Reply) and event.id == self.negotiation:
                self.negotiation = None
                if event.ok:
                    self.state = QmpState.READY
            elif isinstance(event, ConnectionClosed):
                self.state = QmpState.CLOSED

    @invariant()
    def states_agree(self) -> None:
        assert self.core.state is self.state
        assert self.core.error is None


TestQmpMachine = QmpMachine.TestCase
