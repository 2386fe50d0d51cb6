"""A yamux stream's state table (virtrio/channels/yamux/_streams.py) and the session core's
contract: data after FIN, the end of input, sticky errors, operations a state forbids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from virtrio.channels._sansio import ConnectionClosed
from virtrio.channels.yamux import (
    StreamState,
    YamuxLocalProtocolError,
    YamuxProtocolError,
    YamuxSession,
)
from virtrio.channels.yamux._events import (
    StreamAcknowledged,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
)
from virtrio.channels.yamux._frames import HEADER
from virtrio.channels.yamux._streams import TRANSITIONS, StreamInput
from virtrio.errors import LocalProtocolError, ProtocolError

S, In = StreamState, StreamInput


# --- the table ------------------------------------------------------------------------------


def test_every_state_is_reachable_and_closed_is_final() -> None:
    seen, todo = set(), [S.SYN_SENT, S.SYN_RECEIVED]
    while todo:
        state = todo.pop()
        if state not in seen:
            seen.add(state)
            todo += TRANSITIONS[state].values()
    assert seen == set(S)
    assert TRANSITIONS[S.CLOSED] == {}
    for state in set(S) - {S.CLOSED}:
        assert TRANSITIONS[state][In.SEND_RST] is S.CLOSED
        assert TRANSITIONS[state][In.RECEIVE_RST] is S.CLOSED


def test_the_table_agrees_with_what_each_state_allows() -> None:
    for state, moves in TRANSITIONS.items():
        acked = TRANSITIONS[moves[In.SEND_ACK]] if In.SEND_ACK in moves else {}
        assert (In.SEND_FIN in moves or In.SEND_FIN in acked) == state.sending, state  # FIN+ACK
        assert (In.RECEIVE_FIN in moves) == state.receiving, state
        assert (In.SEND_ACK in moves) == state.ack_owed, state
        assert (In.RECEIVE_ACK in moves) == state.ack_awaited, state
        for what, after in moves.items():
            if what is In.SEND_FIN:
                assert not after.sending
            if what is In.RECEIVE_FIN:
                assert not after.receiving
            assert not (after.ack_owed and not state.ack_owed)  # an ACK owed is never new


# --- two cores and one stream, against a model of the five booleans it replaced ----------------

CLIENT, SERVER = 0, 1


class OneStream(RuleBasedStateMachine):
    """A client opens stream 1 on a server; either side sends data, FIN or RST at random and
    the bytes arrive in arbitrary pieces. A model built from the old booleans (acknowledged,
    FIN sent, FIN received, reset) says which state each side must be in and which events the
    frames delivered must give; an operation a state forbids must raise and send nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.cores = [YamuxSession(client=True), YamuxSession(client=False)]
        self.sid = self.cores[CLIENT].open_stream()
        # per side: what it knows of the stream
        self.known = [True, False]
        self.acked = [False, False]  # client: ACK received; server: ACK sent
        self.fin_sent = [False, False]
        self.fin_received = [False, False]
        # per direction (by sender): queued bytes and the frames they hold, (end, effects)
        self.wire = [bytearray(), bytearray()]
        self.frames: list[list[tuple[int, set[str]]]] = [[], []]
        self.delivered = [0, 0]
        self.budget = [200_000, 200_000]  # stays under the 256 KiB window: never blocked
        self._queue(CLIENT, {"SYN"})

    def _queue(self, side: int, effects: set[str]) -> None:
        data = self.cores[side].data_to_send()
        assert data, effects
        self.wire[side] += data
        end = self.delivered[side] + len(self.wire[side])
        self.frames[side].append((end, effects))

    def _forget_if_done(self, side: int) -> None:
        if self.fin_sent[side] and self.fin_received[side]:
            self.known[side] = False

    def expected(self, side: int) -> StreamState:
        if not self.known[side]:
            return S.CLOSED
        fin_sent, fin_received = self.fin_sent[side], self.fin_received[side]
        if not self.acked[side]:
            if side == CLIENT:
                return S.SYN_SENT_LOCAL_CLOSED if fin_sent else S.SYN_SENT
            return S.SYN_RECEIVED_REMOTE_CLOSED if fin_received else S.SYN_RECEIVED
        return {
            (False, False): S.ESTABLISHED,
            (True, False): S.LOCAL_CLOSED,
            (False, True): S.REMOTE_CLOSED,
        }[fin_sent, fin_received]

    def _refused(self, side: int, operation: Callable[[], object]) -> None:
        with pytest.raises(YamuxLocalProtocolError):
            operation()
        assert self.cores[side].data_to_send() == b""  # nothing was sent

    @rule(side=st.sampled_from([CLIENT, SERVER]), size=st.integers(1, 40_000))
    def send_data(self, side: int, size: int) -> None:
        if not self.known[side] or self.fin_sent[side]:
            self._refused(side, lambda: self.cores[side].send_data(self.sid, b"x"))
            return
        size = min(size, self.budget[side])
        if not size:
            return
        self.budget[side] -= size
        assert self.cores[side].send_data(self.sid, bytes(size)) == size
        effects = {"DATA"}
        if side == SERVER and not self.acked[SERVER]:
            self.acked[SERVER] = True
            effects.add("ACK")
        self._queue(side, effects)

    @precondition(lambda self: self.known[SERVER] and not self.acked[SERVER])
    @rule()
    def server_accepts(self) -> None:
        self.cores[SERVER].accept(self.sid)
        self.acked[SERVER] = True
        self._queue(SERVER, {"ACK"})

    @rule(side=st.sampled_from([CLIENT, SERVER]))
    def send_fin(self, side: int) -> None:
        if not self.known[side] or self.fin_sent[side]:
            self._refused(side, lambda: self.cores[side].send_fin(self.sid))
            return
        self.cores[side].send_fin(self.sid)
        effects = {"FIN"}
        if side == SERVER and not self.acked[SERVER]:
            self.acked[SERVER] = True
            effects.add("ACK")
        self.fin_sent[side] = True
        self._forget_if_done(side)
        self._queue(side, effects)

    @rule(side=st.sampled_from([CLIENT, SERVER]))
    def send_reset(self, side: int) -> None:
        core = self.cores[side]
        core.send_reset(self.sid)
        if not self.known[side]:
            assert core.data_to_send() == b""  # a stream gone needs no abort
            return
        self.known[side] = False
        self._queue(side, {"RST"})

    @rule(side=st.sampled_from([CLIENT, SERVER]), data=st.data())
    def deliver(self, side: int, data: st.DataObject) -> None:
        if not self.wire[side]:
            return
        count = data.draw(st.integers(1, len(self.wire[side])))
        chunk = bytes(self.wire[side][:count])
        del self.wire[side][:count]
        self.delivered[side] += count
        other = 1 - side
        expected: list[type] = []
        while self.frames[side] and self.frames[side][0][0] <= self.delivered[side]:
            _, effects = self.frames[side].pop(0)
            expected += self._arrive(other, effects)
        got = [type(event) for event in self.cores[other].receive_data(chunk)]
        assert got == expected

    def _arrive(self, side: int, effects: set[str]) -> list[type]:
        """The model's receiver ``side`` takes a whole frame; the events it must give."""
        events: list[type] = []
        if "SYN" in effects:
            self.known[side] = True
            events.append(StreamOpened)
        if not self.known[side]:
            return events  # a frame for a stream that is gone: ignored
        if "ACK" in effects and side == CLIENT and not self.acked[CLIENT]:
            self.acked[CLIENT] = True
            events.append(StreamAcknowledged)
        if "DATA" in effects:
            events.append(StreamData)
        if "RST" in effects:
            self.known[side] = False
            events.append(StreamReset)
        if "FIN" in effects:
            self.fin_received[side] = True
            if side == CLIENT and not self.acked[CLIENT]:
                self.acked[CLIENT] = True  # a FIN shows the peer knows the stream
                events.append(StreamAcknowledged)
            self._forget_if_done(side)
            events.append(StreamEnded)
        return events

    @invariant()
    def states_agree(self) -> None:
        for side in (CLIENT, SERVER):
            assert self.cores[side].stream_state(self.sid) is self.expected(side), side


TestOneStream = OneStream.TestCase


# --- the peer's violations, the end of input, sticky errors ---------------------------------


def frame(kind: int, flags: int, stream_id: int, length: int, body: bytes = b"") -> bytes:
    return HEADER.pack(0, kind, flags, stream_id, length) + body


def test_data_after_fin_is_a_protocol_error_and_it_sticks() -> None:
    server = YamuxSession(client=False)
    syn, fin = frame(1, 1, 1, 0), frame(1, 4, 1, 0)
    assert [type(e) for e in server.receive_data(syn + fin)] == [StreamOpened, StreamEnded]
    with pytest.raises(YamuxProtocolError, match="data after the peer's FIN") as first:
        server.receive_data(frame(0, 0, 1, 3, b"abc"))
    assert isinstance(first.value, ProtocolError)
    for _ in range(2):  # whatever comes next, the same error
        with pytest.raises(YamuxProtocolError) as again:
            server.receive_data(frame(2, 1, 0, 7))
        assert again.value is first.value
    assert server.error is first.value
    with pytest.raises(YamuxProtocolError):
        server.receive_data(b"")


def test_a_second_fin_is_a_protocol_error() -> None:
    server = YamuxSession(client=False)
    server.receive_data(frame(1, 1, 1, 0) + frame(1, 4, 1, 0))
    with pytest.raises(YamuxProtocolError, match="second FIN"):
        server.receive_data(frame(1, 4, 1, 0))


def test_operations_the_state_forbids_are_local_errors() -> None:
    client = YamuxSession(client=True)
    sid = client.open_stream()
    client.send_fin(sid)
    client.data_to_send()
    for operation in (lambda: client.send_data(sid, b"x"), lambda: client.send_fin(sid)):
        with pytest.raises(YamuxLocalProtocolError) as info:
            operation()
        assert isinstance(info.value, LocalProtocolError)
        assert not isinstance(info.value, ProtocolError)
    assert client.data_to_send() == b""
    assert client.send_window(sid) == 0
    with pytest.raises(YamuxLocalProtocolError, match="closed or was reset"):
        client.send_fin(99)


@st.composite
def session_bytes(draw: st.DrawFn) -> tuple[bytes, set[int]]:
    """What a client sends: opens, data, FINs, pings; and where its frames end."""
    client = YamuxSession(client=True)
    wire, bounds = bytearray(), {0}
    streams: list[int] = []
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["open", "data", "fin", "ping"]))
        if action == "open" or not streams:
            streams.append(client.open_stream())
        elif action == "data":
            client.send_data(streams[-1], draw(st.binary(min_size=1, max_size=50)))
        elif action == "fin":
            client.send_fin(streams.pop())
        else:
            client.ping()
        wire += client.data_to_send()
        bounds.add(len(wire))
    return bytes(wire), bounds


@given(session_bytes(), st.data())
def test_end_of_input_at_every_point(sent: tuple[bytes, set[int]], data: st.DataObject) -> None:
    wire, bounds = sent
    cut = data.draw(st.integers(0, len(wire)))
    server = YamuxSession(client=False)
    if cut:
        server.receive_data(wire[:cut])
    if cut in bounds:
        assert server.receive_data(b"") == [ConnectionClosed()]
        assert server.receive_data(b"") == []  # reported once
        with pytest.raises(YamuxLocalProtocolError, match="after the end"):
            server.receive_data(b"\0")
    else:
        with pytest.raises(YamuxProtocolError, match="ended inside a frame"):
            server.receive_data(b"")
        with pytest.raises(YamuxProtocolError, match="ended inside a frame"):
            server.receive_data(b"")  # sticky
