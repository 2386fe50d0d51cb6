"""The sans-I/O yamux session: the spec notes' test vectors, protocol errors, flow control, and
hypothesis over arbitrary byte splits, garbage and random operations on two sessions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from virtrio.channels.yamux import DEFAULT_WINDOW, Flag, YamuxProtocolError, YamuxSession
from virtrio.channels.yamux._frames import HEADER, HEADER_SIZE, VERSION
from virtrio.channels.yamux._session import (
    MAX_FRAME,
    MAX_UNACKED,
    GoAwayReceived,
    PongReceived,
    StreamAcknowledged,
    StreamData,
    StreamEnded,
    StreamOpened,
    StreamReset,
    WindowUpdated,
)
from virtrio.errors import LocalProtocolError


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def connected() -> tuple[YamuxSession, YamuxSession]:
    """A client with stream 1 open and a server that accepted it (wires drained)."""
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    client.open_stream()
    assert server.receive_data(client.data_to_send()) == [StreamOpened(1)]
    server.accept(1)
    assert client.receive_data(server.data_to_send()) == [StreamAcknowledged(1)]
    return client, server


# --- the spec notes' test vectors ---------------------------------------------------------------


def test_vector_syn_and_ack() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    assert client.open_stream() == 1
    syn = client.data_to_send()
    assert syn == h("00 01 0001 00000001 00000000")
    server.receive_data(syn)
    server.accept(1)
    assert server.data_to_send() == h("00 01 0002 00000001 00000000")


def test_vector_data_fin_and_window_update() -> None:
    client, server = connected()
    client.send_data(1, b"hello")
    client.send_fin(1)
    wire = client.data_to_send()
    assert wire == h("00 00 0000 00000001 00000005 68656c6c6f") + h("00 01 0004 00000001 00000000")
    assert server.receive_data(wire) == [StreamData(1, b"hello"), StreamEnded(1)]

    client, server = connected()
    server.send_data(1, bytes(131072))
    client.receive_data(server.data_to_send())
    client.consumed(1, 131072)  # half the window read by the application: credit goes back
    assert client.data_to_send() == h("00 01 0000 00000001 00020000")


def test_vector_lazy_open_with_data() -> None:
    server = YamuxSession(client=False)
    events = server.receive_data(h("00 00 0001 00000003 00000002 6869"))
    assert events == [StreamOpened(3), StreamData(3, b"hi")]
    server.accept(3)
    assert server.data_to_send() == h("00 01 0002 00000003 00000000")


def test_vector_rst() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    assert server.open_stream() == 2
    server.data_to_send()
    server.send_reset(2)
    rst = server.data_to_send()
    assert rst == h("00 01 0008 00000002 00000000")
    client.receive_data(h("00 01 0001 00000002 00000000"))
    assert client.receive_data(rst) == [StreamReset(2)]


def test_vector_ping_and_go_away() -> None:
    session = YamuxSession(client=True)
    assert session.receive_data(h("00 02 0001 00000000 00000007")) == []
    assert session.data_to_send() == h("00 02 0002 00000000 00000007")
    for code in (0, 1, 2):
        session = YamuxSession(client=True)
        session.go_away(code)
        assert session.data_to_send() == h(f"00 03 0000 00000000 0000000{code}")
        assert YamuxSession(client=False).receive_data(h(f"00 03 0000 00000000 0000000{code}")) == [
            GoAwayReceived(code)
        ]


# --- protocol rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (h("01 00 0000 00000000 00000000"), "version 1"),
        (h("00 04 0000 00000000 00000000"), "frame type 4"),
        (h("00 01 0001 00000001 00000000") * 2, "duplicate SYN"),
        (h("00 01 0001 00000004 00000000"), "parity"),
        (h("00 00 0001 00000001 00040001") + bytes(0x40001), "exceed its window"),
        (h("00 01 0001 00000001 00000000 00 01 0000 00000001 ffffffff"), None),
    ],
)
def test_protocol_errors(wire: bytes, message: str | None) -> None:
    server = YamuxSession(client=False)
    server.open_stream()  # stream 2 exists, so a SYN for it from the client is a duplicate too
    server.data_to_send()
    if message is None:  # our send window of stream 1 overflowing 2**32-1
        with pytest.raises(YamuxProtocolError, match="overflow"):
            server.receive_data(wire)
        return
    with pytest.raises(YamuxProtocolError, match=message):
        server.receive_data(wire)


def test_frames_for_unknown_streams_are_ignored() -> None:
    client = YamuxSession(client=True)
    wire = (
        h("00 00 0000 00000009 00000003 616263")  # Data for a stream that never was: drained
        + h("00 01 0000 00000009 00001000")  # a late window update
        + h("00 01 0008 00000009 00000000")  # a late RST
        + h("00 02 0002 00000000 00000005")  # a pong for a ping we never sent
        + h("00 02 0001 00000000 00000006")
    )
    assert client.receive_data(wire) == []
    assert client.data_to_send() == h("00 02 0002 00000000 00000006")  # only the real ping


def test_fin_and_rst_ride_on_data_frames() -> None:
    client, server = connected()
    assert server.receive_data(h("00 00 0004 00000001 00000002 6869")) == [
        StreamData(1, b"hi"),
        StreamEnded(1),
    ]
    assert client.receive_data(h("00 00 0008 00000001 00000000")) == [StreamReset(1)]


def test_ping_round_trip_carries_the_opaque() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    opaque = client.ping()
    server.receive_data(client.data_to_send())
    assert client.receive_data(server.data_to_send()) == [PongReceived(opaque)]
    assert server.data_to_send() == b""  # one answer only


def test_never_over_the_window_and_frames_split() -> None:
    client, server = connected()
    assert client.send_data(1, bytes(MiB := 1024 * 1024)) == DEFAULT_WINDOW
    assert client.send_data(1, b"more") == 0
    events = server.receive_data(client.data_to_send())
    assert sum(len(e.data) for e in events if isinstance(e, StreamData)) == DEFAULT_WINDOW
    assert all(len(e.data) <= MAX_FRAME for e in events if isinstance(e, StreamData))
    server.consumed(1, DEFAULT_WINDOW)
    assert client.receive_data(server.data_to_send()) == [WindowUpdated(1)]
    assert client.send_window(1) == DEFAULT_WINDOW < MiB


def test_a_head_rides_in_the_first_frame_whole_or_not_at_all() -> None:
    """``head`` (a length prefix) is written after the first frame's header, so the peer
    reads ``head + data`` as one body; it never goes without a byte of data after it."""
    client, server = connected()
    frames = client.data_frames(1, b"body", b"HEAD")
    assert frames == [HEADER.pack(VERSION, 0, 0, 1, 8) + b"HEAD", b"body"]
    assert server.receive_data(b"".join(frames)) == [StreamData(1, b"HEADbody")]
    assert client.send_window(1) == DEFAULT_WINDOW - 8
    assert client.send_data(1, bytes(DEFAULT_WINDOW - 12)) == DEFAULT_WINDOW - 12
    assert client.data_frames(1, b"xyz", b"HEAD") == []  # 4 bytes of credit: no byte after
    assert client.send_window(1) == 4
    assert client.send_data(1, b"xyz", b"HEA") == 1  # the head and one byte
    assert client.send_window(1) == 0
    wire = client.data_to_send()
    events = server.receive_data(wire)
    assert b"".join(bytes(e.data) for e in events if isinstance(e, StreamData))[-4:] == b"HEAx"


def test_a_head_and_a_large_body_split_at_the_frame_limit() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False, window=4 * MAX_FRAME)
    client.open_stream()
    server.receive_data(client.data_to_send())
    server.accept(1)
    client.receive_data(server.data_to_send())
    body = random.Random(1).randbytes(MAX_FRAME + 100)
    frames = client.data_frames(1, body, b"12345678")
    sizes = [HEADER.unpack(bytes(frame[:HEADER_SIZE]))[4] for frame in frames[::2]]
    assert sizes == [MAX_FRAME, 108]  # no frame over the limit, head included
    assert sum(map(len, frames[1::2])) == len(body)


def test_larger_window_is_announced_and_used() -> None:
    client, server = (
        YamuxSession(client=True, window=4 * DEFAULT_WINDOW),
        YamuxSession(client=False),
    )
    client.open_stream()
    assert client.data_to_send() == h("00 01 0001 00000001 000c0000")
    client_wire = h("00 01 0001 00000001 000c0000")
    server.receive_data(client_wire)
    assert server.send_window(1) == 4 * DEFAULT_WINDOW


def test_at_most_256_unacknowledged_opens() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    for _ in range(MAX_UNACKED):
        client.open_stream()
    assert not client.can_open
    with pytest.raises(LocalProtocolError, match="acknowledgement"):
        client.open_stream()
    server.receive_data(client.data_to_send())
    server.accept(1)
    client.receive_data(server.data_to_send())
    assert client.can_open


def test_a_stream_gone_before_its_ack_frees_its_open_slot() -> None:
    """Reset by us, reset by the peer, or closed both ways before the peer acknowledged:
    each frees the slot (as hashicorp does), so opens never wedge at 256."""
    client = YamuxSession(client=True)
    for _ in range(3 * MAX_UNACKED):  # far past the budget, had resets leaked it
        client.send_reset(client.open_stream())
    assert client.can_open
    for _ in range(MAX_UNACKED):
        stream_id = client.open_stream()
        client.receive_data(HEADER.pack(0, 1, int(Flag.RST), stream_id, 0))
    assert client.can_open
    for _ in range(MAX_UNACKED):
        stream_id = client.open_stream()
        client.send_fin(stream_id)
        client.receive_data(HEADER.pack(0, 1, int(Flag.FIN), stream_id, 0))  # FIN, no ACK
    assert client.can_open
    # an acknowledged stream's slot was freed by its ACK, and is not freed twice
    stream_id = client.open_stream()
    client.receive_data(HEADER.pack(0, 1, int(Flag.ACK), stream_id, 0))
    client.send_reset(stream_id)
    for _ in range(MAX_UNACKED):
        client.open_stream()
    assert not client.can_open


def test_backlog_overflow_is_refused_with_rst() -> None:
    server = YamuxSession(client=False, accept_backlog=1)
    events = server.receive_data(h("00 01 0001 00000001 00000000 00 01 0001 00000003 00000000"))
    assert events == [StreamOpened(1)]
    assert server.data_to_send() == h("00 01 0008 00000003 00000000")


def test_after_go_away_opens_fail_and_inbound_are_refused() -> None:
    client, server = YamuxSession(client=True), YamuxSession(client=False)
    server.go_away()
    client.receive_data(server.data_to_send())
    with pytest.raises(LocalProtocolError, match="GoAway"):
        client.open_stream()
    server.receive_data(h("00 01 0001 00000001 00000000"))
    assert server.data_to_send() == h("00 01 0008 00000001 00000000")


# --- hypothesis: the parser ---------------------------------------------------------------------


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (modulo its length); no piece is empty (``b""`` is the end)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = zip([0, *points], [*points, len(data)], strict=True)
    return [data[a:b] for a, b in pieces if a < b]


@given(
    payloads=st.lists(st.binary(min_size=1, max_size=3000), max_size=20),
    pings=st.lists(st.integers(0, 2**32 - 1), max_size=5),
    cuts=st.lists(st.integers(0, 10**6), max_size=30),
)
def test_any_split_gives_the_same_events(
    payloads: list[bytes], pings: list[int], cuts: list[int]
) -> None:
    client = YamuxSession(client=True)
    client.open_stream()
    for payload in payloads:
        client.send_data(1, payload)
    client.send_fin(1)
    wire = bytes(client.data_to_send())
    wire += b"".join(h("00 02 0001 00000000") + p.to_bytes(4, "big") for p in pings)

    server = YamuxSession(client=False)
    events = [e for part in splits(wire, cuts) for e in server.receive_data(part)]
    assert events[0] == StreamOpened(1)
    assert b"".join(e.data for e in events if isinstance(e, StreamData)) == b"".join(payloads)
    assert events[-1] == StreamEnded(1)
    answers = server.data_to_send()
    assert answers == b"".join(h("00 02 0002 00000000") + p.to_bytes(4, "big") for p in pings)


@given(
    sizes=st.lists(st.integers(1, 43_000), min_size=1, max_size=6),  # within the first window
    cuts=st.lists(st.integers(0, 10**6), max_size=12),
    as_bytearray=st.booleans(),
)
def test_large_bodies_survive_any_split(
    sizes: list[int], cuts: list[int], as_bytearray: bool
) -> None:
    """Bodies large enough to be handed out as views, and frames cut anywhere (the header
    included), arrive whole and in order, whatever type the input has; input that is not
    ``bytes`` (a reused read buffer, overwritten after each call here) is not kept."""
    client = YamuxSession(client=True, window=1024 * 1024)
    client.open_stream()
    payloads = [random.Random(size).randbytes(size) for size in sizes]
    for payload in payloads:
        assert client.send_data(1, payload) == len(payload)
    wire = bytes(client.data_to_send())

    server = YamuxSession(client=False, window=1024 * 1024)
    reused = bytearray(len(wire))
    events = []
    for part in splits(wire, cuts):
        if as_bytearray:
            reused[: len(part)] = part
            events += server.receive_data(memoryview(reused)[: len(part)])
            reused[:] = bytes(len(reused))  # the next read overwrites the buffer
        else:
            events += server.receive_data(part)
    received = b"".join(e.data for e in events if isinstance(e, StreamData))
    assert received == b"".join(payloads)


@given(st.binary(min_size=1, max_size=200), st.lists(st.integers(0, 300), max_size=5))
def test_garbage_is_a_clear_error_or_ignored(garbage: bytes, cuts: list[int]) -> None:
    session = YamuxSession(client=True)
    try:
        for part in splits(garbage, cuts):
            session.receive_data(part)
    except YamuxProtocolError as exc:
        error = str(exc)
        assert error  # a specific message, and nothing but YamuxProtocolError escapes
    if garbage[0] != 0 and len(garbage) >= 12:
        with pytest.raises(YamuxProtocolError, match="version"):
            YamuxSession(client=True).receive_data(garbage)


# --- hypothesis: two sessions, random operations ------------------------------------------------

PATTERN = random.Random(3).randbytes(4 * 1024 * 1024)


class TwoSessions(RuleBasedStateMachine):
    """A client and a server joined by two byte queues delivered in random pieces; streams
    opened on either side, written, read, half-closed and reset at random. Every byte written
    must arrive once and in order, windows are never exceeded (that would raise), and once
    everything is delivered and read no writer is left waiting for credit."""

    @initialize(
        window=st.sampled_from([DEFAULT_WINDOW, 4 * DEFAULT_WINDOW]),
        tuned=st.sampled_from([None, 16 * DEFAULT_WINDOW]),
    )
    def start(self, window: int, tuned: int | None) -> None:
        self.sides = [
            YamuxSession(client=True, window=window, max_window=tuned, max_extra=window * 8),
            YamuxSession(client=False, window=window, max_window=tuned, max_extra=window * 8),
        ]
        self.wire = [bytearray(), bytearray()]
        self.streams: list[set[int]] = [set(), set()]  # usable for writing, per side
        self.to_accept: list[list[int]] = [[], []]
        self.want: dict[tuple[int, int], int] = {}  # bytes the app asked to write
        self.sent: dict[tuple[int, int], int] = {}  # bytes the core took
        self.got: dict[tuple[int, int], bytearray] = {}  # bytes delivered to the other side
        self.unread: dict[tuple[int, int], int] = {}
        self.reset: set[int] = set()
        self.ended: set[tuple[int, int]] = set()
        self.heads: dict[tuple[int, int], int] = {}  # see _write_pending

    def _flush(self, side: int) -> None:
        self.wire[side] += self.sides[side].data_to_send()

    def _write_pending(self, side: int, sid: int) -> None:
        key = (side, sid)
        if sid in self.reset or sid not in self.streams[side]:
            return
        start, end = self.sent[key], self.want[key]
        # the write's first bytes as a separate head (a message's length prefix), going in
        # the same frame as the rest: whole, with at least one more byte, or not at all
        head = min(self.heads.get(key, 0), end - start - 1)
        if start < end:
            if head > 0:
                window = self.sides[side].send_window(sid)
                taken = self.sides[side].send_data(
                    sid, PATTERN[start + head : end], PATTERN[start : start + head]
                )
                assert (taken > 0) == (window > head)
                if taken:
                    self.sent[key] += head + taken
                    self.heads.pop(key)
            else:
                self.sent[key] += self.sides[side].send_data(sid, PATTERN[start:end])
            self._flush(side)

    @rule(side=st.integers(0, 1))
    def open(self, side: int) -> None:
        if not self.sides[side].can_open:
            return
        sid = self.sides[side].open_stream()
        self.streams[side].add(sid)
        self.want[side, sid] = self.sent[side, sid] = 0
        self._flush(side)

    @rule(side=st.integers(0, 1))
    def accept(self, side: int) -> None:
        if self.to_accept[side]:
            sid = self.to_accept[side].pop(0)
            self.sides[side].accept(sid)
            if sid not in self.reset:
                self.streams[side].add(sid)
                self.want.setdefault((side, sid), 0)
                self.sent.setdefault((side, sid), 0)
            self._flush(side)

    @rule(
        side=st.integers(0, 1),
        pick=st.integers(0, 10**6),
        size=st.integers(1, 700_000),
        head=st.sampled_from([0, 0, 1, 8]),
    )
    def write(self, side: int, pick: int, size: int, head: int) -> None:
        if not self.streams[side]:
            return
        sid = sorted(self.streams[side])[pick % len(self.streams[side])]
        key = (side, sid)
        if head and self.sent[key] == self.want[key]:  # a new write, nothing pending
            self.heads[key] = head
        self.want[key] = min(self.want[key] + size, len(PATTERN))
        self._write_pending(side, sid)

    @rule(side=st.integers(0, 1), size=st.integers(1, 600_000))
    def deliver(self, side: int, size: int) -> None:
        chunk = bytes(self.wire[side][:size])
        del self.wire[side][:size]
        if not chunk:
            return  # b"" would be the end of input
        other = 1 - side
        for event in self.sides[other].receive_data(chunk):
            if isinstance(event, StreamOpened):
                self.to_accept[other].append(event.stream_id)
                self.got[side, event.stream_id] = bytearray()
                self.unread[other, event.stream_id] = 0
            elif isinstance(event, StreamData):
                key = (side, event.stream_id)
                self.got.setdefault(key, bytearray()).extend(event.data)
                self.unread[other, event.stream_id] = self.unread.get(
                    (other, event.stream_id), 0
                ) + len(event.data)
            elif isinstance(event, StreamEnded):
                self.ended.add((side, event.stream_id))
            elif isinstance(event, StreamReset):
                self.reset.add(event.stream_id)
                self.streams[other].discard(event.stream_id)
            elif isinstance(event, WindowUpdated):
                self._write_pending(other, event.stream_id)
        self._flush(other)

    @rule(side=st.integers(0, 1), pick=st.integers(0, 10**6), size=st.integers(1, 600_000))
    def read(self, side: int, pick: int, size: int) -> None:
        keys = sorted(k for k, v in self.unread.items() if k[0] == side and v)
        if not keys:
            return
        key = keys[pick % len(keys)]
        count = min(size, self.unread[key])
        self.unread[key] -= count
        self.sides[side].consumed(key[1], count)
        self._flush(side)

    @precondition(lambda self: any(self.streams))
    @rule(side=st.integers(0, 1), pick=st.integers(0, 10**6), reset=st.booleans())
    def close(self, side: int, pick: int, reset: bool) -> None:
        if not self.streams[side]:
            return
        sid = sorted(self.streams[side])[pick % len(self.streams[side])]
        if self.sent[side, sid] < self.want[side, sid]:
            return  # a writer still blocked on credit: only close finished streams
        self.streams[side].discard(sid)
        if reset:
            self.sides[side].send_reset(sid)
            self.reset.add(sid)
        else:
            self.sides[side].send_fin(sid)
        self._flush(side)

    @invariant()
    def bytes_arrive_in_order(self) -> None:
        for key, data in getattr(self, "got", {}).items():
            assert data == PATTERN[: len(data)], f"stream {key} corrupted"
            assert len(data) <= self.sent.get(key, 0)

    def teardown(self) -> None:
        if not hasattr(self, "sides"):
            return
        for _ in range(10_000):
            progress = False
            for side in (0, 1):
                while self.to_accept[side]:
                    self.accept(side)
                    progress = True
                if self.wire[side]:
                    self.deliver(side, len(self.wire[side]))
                    progress = True
                for key in [k for k, v in self.unread.items() if k[0] == side and v]:
                    self.unread[key], count = 0, self.unread[key]
                    self.sides[side].consumed(key[1], count)
                    self._flush(side)
                    progress = True
                for sid in list(self.streams[side]):
                    before = self.sent[side, sid]
                    self._write_pending(side, sid)
                    progress |= self.sent[side, sid] != before
            if not progress:
                break
        for (side, sid), wanted in self.want.items():
            if sid in self.reset:
                continue
            assert self.sent[side, sid] == wanted, f"writer of {side}/{sid} deadlocked"
            assert len(self.got.get((side, sid), b"")) == wanted


TestTwoSessions = TwoSessions.TestCase
TestTwoSessions.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_auto_tuning_grows_the_window_only_when_the_reader_keeps_up() -> None:
    client = YamuxSession(client=True)
    server = YamuxSession(client=False, max_window=4 * DEFAULT_WINDOW)
    client.open_stream()
    server.receive_data(client.data_to_send())
    server.accept(1)
    client.receive_data(server.data_to_send())
    client.send_data(1, bytes(DEFAULT_WINDOW))  # the writer uses all its credit
    server.receive_data(client.data_to_send())
    server.consumed(1, DEFAULT_WINDOW)  # and the reader took it all at once
    update = server.data_to_send()
    assert update == h("00 01 0000 00000001 00080000")  # credit back + 256 KiB more
    client.receive_data(update)
    assert client.send_window(1) == 2 * DEFAULT_WINDOW

    slow = YamuxSession(client=False, max_window=4 * DEFAULT_WINDOW)
    opened, data = h("00 01 0001 00000001 00000000"), h("00 00 0000 00000001 00040000")
    slow.receive_data(opened + data + bytes(DEFAULT_WINDOW))
    slow.data_to_send()
    slow.consumed(1, DEFAULT_WINDOW // 2)  # half read, half still buffered: no growth
    assert slow.data_to_send() == h("00 01 0002 00000001 00020000")  # ACK rides along


def test_auto_tuning_grows_the_window_of_a_reader_that_keeps_up_with_a_slower_writer() -> None:
    """Credit returned costs both ends a frame, and a Python one scheduling rounds: a stream
    whose reader keeps up grows even while its writer still has credit left."""
    client = YamuxSession(client=True)
    server = YamuxSession(client=False, max_window=4 * DEFAULT_WINDOW)
    client.open_stream()
    server.receive_data(client.data_to_send())
    server.accept(1)
    client.receive_data(server.data_to_send())
    client.send_data(1, bytes(DEFAULT_WINDOW // 2))  # half its credit
    server.receive_data(client.data_to_send())
    server.consumed(1, DEFAULT_WINDOW // 2)  # read at once
    assert server.data_to_send() == h("00 01 0000 00000001 00060000")  # back + 256 KiB more
    server.max_extra = 0  # the growth over all streams is bounded
    client.receive_data(h("00 01 0000 00000001 00060000"))
    client.send_data(1, bytes(DEFAULT_WINDOW))
    server.receive_data(client.data_to_send())
    server.consumed(1, DEFAULT_WINDOW)
    assert server.data_to_send() == h("00 01 0000 00000001 00040000")  # credit back only


def test_answers_to_the_peers_pings_and_refused_opens_are_counted_until_taken() -> None:
    """What an I/O shell bounds (issue 17): frames the peer makes us write just by sending."""
    core = YamuxSession(client=True, accept_backlog=0)
    ping = HEADER.pack(VERSION, 2, 1, 0, 7)  # PING SYN
    refused_open = HEADER.pack(VERSION, 1, 1, 2, 0)  # WINDOW_UPDATE SYN, beyond the backlog
    core.receive_data(ping * 3 + refused_open)
    assert core.answers_queued == 4 * HEADER_SIZE == core.bytes_queued
    assert len(core.data_to_send()) == 4 * HEADER_SIZE
    assert core.answers_queued == 0
    core.ping()  # our own frames are not answers
    assert core.answers_queued == 0 < core.bytes_queued
