"""The client state machine: what may be sent when, acks and retransmissions, how each packet
is read in each state; a rule-based machine against a model, with arbitrary splits."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from virtrio.channels._jsonstream import NEED_DATA
from virtrio.channels.gdb import (
    ConsoleOutput,
    Exited,
    GdbLocalProtocolError,
    GdbProtocol,
    GdbProtocolError,
    ProtocolState,
    Reply,
    ResumeRefused,
    Stopped,
    ThreadId,
    encode_packet,
    escape,
)


def events(protocol: GdbProtocol, data: bytes = b"") -> list[object]:
    if data:
        protocol.receive_data(data)
    out = []
    while (event := protocol.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def test_request_reply_and_acks() -> None:
    p = GdbProtocol()
    assert p.send_request(b"g") == b"$g#67"
    assert p.state is ProtocolState.WAITING
    with pytest.raises(GdbLocalProtocolError, match="still waiting"):
        p.send_request(b"?")
    assert events(p, b"+" + encode_packet(b"00ff")) == [Reply(b"00ff")]
    assert p.data_to_send() == b"+"
    assert p.data_to_send() == b""
    assert p.state is ProtocolState.IDLE


def test_a_nak_sends_the_packet_again_and_too_many_give_up() -> None:
    p = GdbProtocol()
    sent = p.send_request(b"m0,4")
    events(p, b"-")
    assert p.data_to_send() == sent
    for _ in range(4):
        events(p, b"-")
    with pytest.raises(GdbProtocolError, match="refused"):
        events(p, b"-")


def test_a_bad_checksum_is_answered_with_a_nak() -> None:
    p = GdbProtocol()
    p.send_request(b"g")
    assert events(p, b"+$00#00") == []
    assert p.data_to_send() == b"-"
    assert events(p, encode_packet(b"00")) == [Reply(b"00")]


def test_no_ack_mode() -> None:
    p = GdbProtocol()
    p.send_request(b"QStartNoAckMode")
    events(p, b"+" + encode_packet(b"OK"))
    assert p.data_to_send() == b"+"  # the OK itself is still acknowledged
    p.end_ack_mode()
    p.send_request(b"g")
    assert events(p, encode_packet(b"00")) == [Reply(b"00")]
    assert p.data_to_send() == b""
    p.send_request(b"g")
    with pytest.raises(GdbProtocolError, match="no-ack"):
        events(p, b"$00#00")


def test_running_console_output_and_the_stop() -> None:
    p = GdbProtocol()
    with pytest.raises(GdbLocalProtocolError, match="not running"):
        p.send_interrupt()
    p.send_resume(b"vCont;c")
    assert p.state is ProtocolState.RUNNING
    with pytest.raises(GdbLocalProtocolError, match="running"):
        p.send_request(b"g")
    assert p.send_interrupt() == b"\x03"
    got = events(p, encode_packet(b"O" + b"hi\n".hex().encode()) + encode_packet(b"T02thread:1;"))
    assert got == [ConsoleOutput(b"hi\n"), Stopped(2, ThreadId(1))]
    assert p.state is ProtocolState.IDLE
    p.send_resume(b"c")
    assert events(p, encode_packet(b"W00")) == [Exited(0)]


def test_a_refused_resume() -> None:
    p = GdbProtocol()
    p.send_resume(b"vCont;c:p9.9")
    assert events(p, encode_packet(b"E22")) == [ResumeRefused(b"E22")]
    assert p.state is ProtocolState.IDLE


def test_monitor_output_comes_before_its_reply_and_OK_is_not_output() -> None:
    p = GdbProtocol()
    p.send_request(b"qRcmd," + b"info".hex().encode())
    out = events(p, encode_packet(b"O" + b"QEMU\n".hex().encode()) + encode_packet(b"OK"))
    assert out == [ConsoleOutput(b"QEMU\n"), Reply(b"OK")]


def test_a_packet_with_no_request_pending_is_a_protocol_error() -> None:
    p = GdbProtocol()
    with pytest.raises(GdbProtocolError, match="no request pending"):
        events(p, encode_packet(b"OK"))


def test_end_of_stream() -> None:
    p = GdbProtocol()
    p.receive_data(b"")
    with pytest.raises(GdbLocalProtocolError, match="closed"):
        p.send_request(b"g")
    with pytest.raises(GdbProtocolError):
        p.receive_data(b"+")


payloads = st.binary(max_size=40).map(lambda b: b.hex().encode()[:60])


class ProtocolMachine(RuleBasedStateMachine):
    """The core against a model of the exchange, bytes arriving in arbitrary pieces."""

    def __init__(self) -> None:
        super().__init__()
        self.p = GdbProtocol()
        self.state = ProtocolState.IDLE
        self.ack_mode = True
        self.pending = b""  # bytes sent by the "stub", not yet fed
        self.expected: list[object] = []
        self.acks_owed = 0

    @precondition(lambda self: self.state is ProtocolState.IDLE and not self.pending)
    @rule(payload=st.sampled_from([b"g", b"m0,4", b"qRcmd,6869", b"Z0,1000,1"]))
    def request(self, payload: bytes) -> None:
        assert self.p.send_request(payload) == encode_packet(payload)
        self.state = ProtocolState.WAITING

    @precondition(lambda self: self.state is ProtocolState.IDLE and not self.pending)
    @rule(payload=st.sampled_from([b"c", b"s", b"vCont;c", b"vCont;s:p1.1"]))
    def resume(self, payload: bytes) -> None:
        self.p.send_resume(payload)
        self.state = ProtocolState.RUNNING

    @precondition(lambda self: self.state is ProtocolState.WAITING)
    @rule(reply=payloads)
    def stub_replies(self, reply: bytes) -> None:
        self._stub_sends(reply, Reply(reply))
        self.state = ProtocolState.IDLE

    @precondition(lambda self: self.state is ProtocolState.RUNNING)
    @rule(text=st.binary(min_size=1, max_size=30))
    def stub_prints(self, text: bytes) -> None:
        self._stub_sends(b"O" + text.hex().encode(), ConsoleOutput(text))

    @precondition(lambda self: self.state is ProtocolState.RUNNING)
    @rule(signal=st.integers(0, 255), tid=st.integers(1, 8))
    def stub_stops(self, signal: int, tid: int) -> None:
        self._stub_sends(b"T%02xthread:%x;" % (signal, tid), Stopped(signal, ThreadId(tid)))
        self.state = ProtocolState.IDLE

    @precondition(lambda self: self.state is ProtocolState.RUNNING)
    @rule()
    def interrupt(self) -> None:
        assert self.p.send_interrupt() == b"\x03"

    @rule(ack=st.booleans())
    def stub_acks(self, ack: bool) -> None:
        if ack:
            self.pending += b"+"

    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        if not self.pending:
            return
        cut = data.draw(st.integers(1, len(self.pending)))
        chunk, self.pending = self.pending[:cut], self.pending[cut:]
        got = events(self.p, chunk)
        for event in got:
            assert event == self.expected.pop(0)
        owed = self.p.data_to_send()
        assert owed == b"+" * len(got) if self.ack_mode else owed == b""

    def _stub_sends(self, payload: bytes, event: object) -> None:
        self.pending += encode_packet(escape(payload))
        self.expected.append(event)

    @invariant()
    def state_matches(self) -> None:
        if not self.pending:
            assert not self.expected
            assert self.p.state is self.state


TestProtocolMachine = ProtocolMachine.TestCase


@pytest.mark.parametrize("before_request", [True, False])
def test_a_stop_reply_before_the_first_reply_is_qemus_greeting(before_request: bool) -> None:
    p = GdbProtocol()
    greeting = encode_packet(b"T02thread:p01.01;")
    if before_request:
        assert events(p, greeting) == [Stopped(2, ThreadId(1, 1))]
        p.send_request(b"qSupported")
    else:
        p.send_request(b"qSupported")
        assert events(p, b"+" + greeting) == [Stopped(2, ThreadId(1, 1))]
    assert events(p, encode_packet(b"PacketSize=1000")) == [Reply(b"PacketSize=1000")]
    # only then: later, a packet with no request pending is an error
    with pytest.raises(GdbProtocolError, match="no request pending"):
        events(p, greeting)


def test_the_reply_to_a_stop_query_is_a_reply() -> None:
    p = GdbProtocol()
    p.send_request(b"?")
    assert events(p, encode_packet(b"T05thread:01;")) == [Reply(b"T05thread:01;")]


def _after_handshake(*, ack_mode: bool) -> GdbProtocol:
    p = GdbProtocol()
    p.send_request(b"qSupported")
    events(p, b"+" + encode_packet(b"PacketSize=1000"))
    p.data_to_send()
    if not ack_mode:
        p.end_ack_mode()
    return p


@given(
    payload=st.binary(max_size=300),
    acked=st.booleans(),
    ack_mode=st.booleans(),
    command=st.sampled_from([b"g", b"m0,4", b"qRcmd,6869"]),
    corrupt=st.integers(min_value=-1, max_value=400),
)
def test_the_fast_path_agrees_with_the_general_one(
    payload: bytes, acked: bool, ack_mode: bool, command: bytes, corrupt: int
) -> None:
    data = (b"+" if acked else b"") + encode_packet(escape(payload))
    if 0 <= corrupt < len(data):  # any byte changed: a bad checksum, a broken frame, ...
        data = data[:corrupt] + bytes(((data[corrupt] + 1) % 256,)) + data[corrupt + 1 :]
    fast, general = _after_handshake(ack_mode=ack_mode), _after_handshake(ack_mode=ack_mode)
    fast.send_request(command)
    general.send_request(command)
    reply = fast.take_reply(data)
    if reply is None:  # nothing changed: the general path takes it as it would have
        assert fast.state is ProtocolState.WAITING
        assert fast.data_to_send() == b""
        return
    assert events(general, data) == [Reply(reply)]
    assert reply == payload
    assert fast.state is general.state is ProtocolState.IDLE
    assert fast.data_to_send() == general.data_to_send() == (b"+" if ack_mode else b"")
    # a nak now asks for nothing again if the stub's ack came with the reply
    assert events(fast, b"-") == events(general, b"-") == []
    assert fast.data_to_send() == general.data_to_send()


def test_the_fast_path_leaves_other_cases_to_the_general_one() -> None:
    p = GdbProtocol()
    assert p.take_reply(encode_packet(b"OK")) is None  # idle
    p.send_request(b"qSupported")
    assert p.take_reply(encode_packet(b"T05")) is None  # QEMU's greeting may come first
    events(p, encode_packet(b"PacketSize=1000"))
    p.send_request(b"m0,4")
    assert p.take_reply(encode_packet(b"01") + encode_packet(b"02")) is None  # two packets
    assert p.take_reply(b"$0*!#" + b"%02x" % (sum(b"0*!") & 0xFF)) is None  # run-length
    assert p.take_reply(b"$0102#00") is None  # a bad checksum is the general path's
    p.receive_data(b"$01")
    assert p.take_reply(encode_packet(b"01")) is None  # bytes already buffered
    p2 = _after_handshake(ack_mode=True)
    p2.send_request(b"qRcmd,6869")
    assert p2.take_reply(encode_packet(b"O6869")) is None  # console output
    assert p2.take_reply(encode_packet(b"OK")) == b"OK"


@given(
    data=st.one_of(st.just(b"+"), st.binary(max_size=4)),
    ack_mode=st.booleans(),
    buffered=st.booleans(),
    reply=st.binary(max_size=40),
)
def test_a_lone_ack_on_the_fast_path_agrees_with_the_general_one(
    data: bytes, ack_mode: bool, buffered: bool, reply: bytes
) -> None:
    fast, general = _after_handshake(ack_mode=ack_mode), _after_handshake(ack_mode=ack_mode)
    for p in (fast, general):
        p.send_request(b"m0,4")
        if buffered:
            p.receive_data(b"$")
    taken = fast.take_ack(data)
    assert taken == (data == b"+" and not buffered)
    if not taken:
        return
    assert events(general, data) == []
    assert fast.state is general.state is ProtocolState.WAITING
    assert fast.data_to_send() == general.data_to_send() == b""
    # acked: a nak now asks for nothing again, on either path; then the reply comes alike
    assert events(fast, b"-") == events(general, b"-") == []
    assert fast.data_to_send() == general.data_to_send() == b""
    packet = encode_packet(escape(reply))
    assert events(fast, packet) == events(general, packet) == [Reply(reply)]


def test_a_lone_ack_is_taken_in_any_state_unless_bytes_are_buffered() -> None:
    p = GdbProtocol()
    assert p.take_ack(b"+")  # idle: the general path only forgets the last packet too
    p.send_request(b"qSupported")
    events(p, encode_packet(b"PacketSize=1000"))
    p.send_resume(b"c")
    assert p.take_ack(b"+")  # the resume's ack, while the target runs
    assert not p.take_ack(b"++")
    p.receive_data(b"$T0")
    assert not p.take_ack(b"+")
    assert events(p, b"5#b9") == [Stopped(5)]


_STOPS = st.sampled_from(
    [b"T05thread:p01.01;swbreak:;", b"T02", b"S05", b"W00", b"X09", b"T05watch:1000;", b"T0g"]
)


@given(
    payload=_STOPS | st.binary(max_size=40),
    acked=st.booleans(),
    ack_mode=st.booleans(),
    corrupt=st.integers(min_value=-1, max_value=60),
)
def test_the_stop_fast_path_agrees_with_the_general_one(
    payload: bytes, acked: bool, ack_mode: bool, corrupt: int
) -> None:
    data = (b"+" if acked else b"") + encode_packet(escape(payload))
    if 0 <= corrupt < len(data):
        data = data[:corrupt] + bytes(((data[corrupt] + 1) % 256,)) + data[corrupt + 1 :]
    fast, general = _after_handshake(ack_mode=ack_mode), _after_handshake(ack_mode=ack_mode)
    fast.send_resume(b"vCont;c")
    general.send_resume(b"vCont;c")
    stop = fast.take_stop(data)
    if stop is None:  # nothing changed: the general path takes it as it would have
        assert fast.state is ProtocolState.RUNNING
        assert fast.data_to_send() == b""
        return
    assert events(general, data) == [stop]
    assert fast.state is general.state is ProtocolState.IDLE
    assert fast.data_to_send() == general.data_to_send() == (b"+" if ack_mode else b"")
    assert events(fast, b"-") == events(general, b"-") == []
    assert fast.data_to_send() == general.data_to_send()


def test_the_stop_fast_path_leaves_other_cases_to_the_general_one() -> None:
    p = _after_handshake(ack_mode=True)
    assert p.take_stop(encode_packet(b"T05")) is None  # idle
    p.send_resume(b"c")
    assert p.take_stop(encode_packet(b"O6869")) is None  # console output
    assert p.take_stop(encode_packet(b"E01")) is None  # the resume refused
    assert p.take_stop(encode_packet(b"")) is None
    assert p.take_stop(encode_packet(b"T05x")) is None  # malformed: the general path raises
    assert p.take_stop(encode_packet(b"T05") + encode_packet(b"OK")) is None  # two packets
    assert p.take_stop(b"$T05#00") is None  # a bad checksum
    assert p.state is ProtocolState.RUNNING
    assert p.take_stop(b"+" + encode_packet(b"T05")) == Stopped(5)
    assert p.data_to_send() == b"+"


def test_framed_requests_are_reused_and_still_checked() -> None:
    p = _after_handshake(ack_mode=False)
    first = p.send_request(b"m1000,4")
    events(p, encode_packet(b"00"))
    assert p.send_request(b"m1000,4") is first == encode_packet(b"m1000,4")
    events(p, encode_packet(b"00"))
    with pytest.raises(ValueError, match="unescaped"):
        p.send_request(b"m#")
    for n in range(600):  # more than it keeps: it starts over, and frames still come right
        assert p.send_request(b"p%x" % n) == encode_packet(b"p%x" % n)
        events(p, encode_packet(b"00"))
