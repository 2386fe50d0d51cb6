"""Requests sent together (``GdbProtocol.send_requests``, ``open_gdb(pipeline=True)``): the
state machine takes their replies in order whatever the chunking and refuses what it cannot
repair, and memory reads against QEMU's real stub (x86_64 and Cortex-M3) read the same bytes
as one piece per round trip, errors included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, strategies as st

from tests.channels.gdb.test_protocol import events
from tests.channels.gdb.test_qemu import _run_to_tick
from tests.peers.programs import GdbQemu
from virtrio.channels.gdb import (
    GdbCommandError,
    GdbLocalProtocolError,
    GdbProtocol,
    GdbProtocolError,
    ProtocolState,
    Reply,
    encode_packet,
    open_gdb,
)
from virtrio.channels.gdb._memory import PIPELINE_DEPTH

StartQemu = Callable[[str], GdbQemu]


def _answered_once() -> GdbProtocol:
    """A protocol past its first reply (before it, requests go out one at a time)."""
    p = GdbProtocol()
    p.send_request(b"?")
    events(p, b"+" + encode_packet(b"S05"))
    p.data_to_send()
    return p


hex_replies = st.lists(
    st.binary(max_size=64).map(lambda b: b.hex().encode()), min_size=2, max_size=8
)


@given(replies=hex_replies, data=st.data())
def test_replies_to_requests_sent_together_come_in_order_whatever_the_chunking(
    replies: list[bytes], data: st.DataObject
) -> None:
    p = _answered_once()
    commands = [b"m%x,10" % (i * 16) for i in range(len(replies))]
    assert p.send_requests(commands) == b"".join(encode_packet(c) for c in commands)
    wire = b"".join(b"+" + encode_packet(r) for r in replies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    got: list[object] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        if start < end:
            assert p.state is ProtocolState.WAITING
            got += events(p, wire[start:end])
    assert got == [Reply(r) for r in replies]
    assert p.state is ProtocolState.IDLE
    assert p.data_to_send() == b"+" * len(replies)


def test_the_fast_path_takes_each_reply_and_moves_to_the_next_request() -> None:
    p = _answered_once()
    p.send_requests([b"m0,4", b"m4,4"])
    assert p.command == b"m0,4"
    assert p.take_reply(b"+" + encode_packet(b"00112233")) == b"00112233"
    assert (p.state, p.command) == (ProtocolState.WAITING, b"m4,4")
    assert p.take_reply(b"+" + encode_packet(b"44556677")) == b"44556677"
    assert p.state is ProtocolState.IDLE
    with pytest.raises(GdbProtocolError, match="no request pending"):
        events(p, encode_packet(b"OK"))


def test_what_cannot_be_repaired_while_requests_sent_together_wait() -> None:
    p = _answered_once()
    p.send_requests([b"m0,4", b"m4,4"])
    with pytest.raises(GdbProtocolError, match="refused one of the packets sent together"):
        events(p, b"-")
    p = _answered_once()
    p.send_requests([b"m0,4", b"m4,4"])
    with pytest.raises(GdbProtocolError, match=r"bad checksum .* sent together"):
        events(p, b"+$00112233#00")


def test_a_request_after_them_is_repaired_again() -> None:
    p = _answered_once()
    p.send_requests([b"m0,4", b"m4,4"])
    events(p, b"+" + encode_packet(b"00") + b"+" + encode_packet(b"11"))
    p.data_to_send()
    sent = p.send_request(b"g")
    events(p, b"-")
    assert p.data_to_send() == sent  # sent again, as for any lone request


def test_requests_sent_together_need_an_idle_protocol_past_its_first_reply() -> None:
    with pytest.raises(GdbLocalProtocolError, match="only after the first reply"):
        GdbProtocol().send_requests([b"m0,4", b"m4,4"])
    assert GdbProtocol().send_requests([b"?"]) == encode_packet(b"?")  # one is one request
    p = _answered_once()
    with pytest.raises(ValueError, match="at least one"):
        p.send_requests([])
    p.send_requests([b"m0,4", b"m4,4"])
    with pytest.raises(GdbLocalProtocolError, match="still waiting"):
        p.send_requests([b"m8,4", b"mc,4"])


#: Per architecture: a span of RAM longer than one window of pieces (PIPELINE_DEPTH of 2 KiB),
#: at an odd address and length; and a read that runs off the end of memory (the Cortex-M3's
#: 64 KiB of SRAM end at 0x20010000; on x86_64 nothing is mapped that high).
SPAN = {"x86_64": (0x100003, 40_001), "cortex-m3": (0x20000005, 40_001)}
OFF_THE_END = {"x86_64": (0xFFFF_FFFF_FFFF_0000, 8192), "cortex-m3": (0x2000F000, 16384)}


@pytest.mark.parametrize("arch", ["x86_64", "cortex-m3"])
async def test_pipelined_reads_match_reads_one_piece_at_a_time(
    gdb_qemu: StartQemu, arch: str
) -> None:
    target = gdb_qemu(arch)
    address, length = SPAN[arch]
    assert length > 2048 * PIPELINE_DEPTH
    async with open_gdb(target.gdb_address) as gdb:
        await _run_to_tick(gdb, target)  # the program has written its pattern
        one_by_one = await gdb.read_memory(address, length)
        pattern = await gdb.read_memory(target.program.symbols["pattern"], 4096)
    async with open_gdb(target.gdb_address, pipeline=True) as gdb:
        batches: list[int] = []
        send_requests = gdb._protocol.send_requests
        gdb._protocol.send_requests = lambda payloads: (  # type: ignore[method-assign]
            batches.append(len(payloads)) or send_requests(payloads)
        )
        assert await gdb.read_memory(address, length) == one_by_one
        # the first piece alone (it finds out whether x works), the rest in windows of 16
        pieces = -(-length // (gdb.features.packet_size // 2))  # 2 KiB each on QEMU 7.2
        assert batches == [PIPELINE_DEPTH, pieces - 1 - PIPELINE_DEPTH]
        assert await gdb.read_memory(target.program.symbols["pattern"], 4096) == pattern
        assert pattern == bytes((i * 7 + 1) & 0xFF for i in range(4096))
        start, n = OFF_THE_END[arch]
        with pytest.raises(GdbCommandError) as info:
            await gdb.read_memory(start, n)
        assert info.value.error_class == "E14"
        # every reply to the pieces sent together was read: the next exchange is in step
        assert await gdb.read_memory(address, 16) == one_by_one[:16]
        assert len(await gdb.read_registers()) > 10
