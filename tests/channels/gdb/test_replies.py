"""Stop replies, qSupported, thread ids and error replies: vectors, round trips, garbage."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.gdb import (
    Exited,
    GdbCommandError,
    GdbProtocolError,
    Stopped,
    Terminated,
    ThreadId,
    parse_stop_reply,
    parse_supported,
)
from virtrio.channels.gdb._replies import decode_hex, parse_thread_list
from virtrio.errors import CommandError

QEMU_SUPPORTED = b"PacketSize=1000;qXfer:features:read+;vContSupported+;multiprocess+"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"T05thread:p01.01;", Stopped(5, ThreadId(1, 1))),
        (b"T02thread:01;", Stopped(2, ThreadId(1))),
        (b"T05watch:20000004;thread:p1.1;", Stopped(5, ThreadId(1, 1), "watch", 0x20000004)),
        (b"T05awatch:10;", Stopped(5, None, "awatch", 0x10)),
        (b"T05swbreak:;", Stopped(5, None, "swbreak")),
        (b"T05hwbreak:;core:1;", Stopped(5, None, "hwbreak", info={"core": "1"})),
        (b"T0510:f0ff0000;", Stopped(5, registers={0x10: b"\xf0\xff\x00\x00"})),
        (b"S05", Stopped(5)),
        (b"W00", Exited(0)),
        (b"W01;process:1f", Exited(1, 0x1F)),
        (b"X09", Terminated(9)),
        (b"X0b;process:2", Terminated(11, 2)),
    ],
)
def test_stop_replies(payload: bytes, expected: object) -> None:
    assert parse_stop_reply(payload) == expected


@pytest.mark.parametrize(
    "payload",
    [b"", b"OK", b"T", b"T5", b"Tzz", b"S05x", b"T05thread", b"T05watch:xyz;", b"W", b"W01;pid:1",
     b"T0510:abc;", b"\xff\xfe", b"T05thread:pzz.1;"],
)  # fmt: skip
def test_malformed_stop_replies(payload: bytes) -> None:
    with pytest.raises(GdbProtocolError):
        parse_stop_reply(payload)


def _encode_stop(stop: Stopped) -> bytes:
    items = [f"{n:x}:{v.hex()}" for n, v in stop.registers.items()]
    if stop.thread is not None:
        items.append(f"thread:{stop.thread}")
    if stop.reason is not None:
        value = f"{stop.address:x}" if stop.address is not None else ""
        items.append(f"{stop.reason}:{value}")
    items += [f"{k}:{v}" for k, v in stop.info.items()]
    return f"T{stop.signal:02x}{''.join(i + ';' for i in items)}".encode()


thread_ids = st.builds(ThreadId, st.integers(-1, 2**32), st.none() | st.integers(-1, 2**16))
stops = st.one_of(
    st.builds(
        Stopped,
        st.integers(0, 255),
        st.none() | thread_ids,
        st.none(),
        st.none(),
        st.dictionaries(st.integers(0, 300), st.binary(min_size=1, max_size=16), max_size=4),
        st.dictionaries(st.sampled_from(["core", "x-vendor"]), st.text("0123abc"),
                        max_size=2),
    ),
    st.builds(Stopped, st.integers(0, 255), st.none() | thread_ids,
              st.sampled_from(["watch", "rwatch", "awatch"]), st.integers(0, 2**64 - 1)),
    st.builds(Stopped, st.integers(0, 255), st.none() | thread_ids,
              st.sampled_from(["swbreak", "hwbreak"])),
)  # fmt: skip


@given(stops)
def test_stop_reply_round_trip(stop: Stopped) -> None:
    assert parse_stop_reply(_encode_stop(stop)) == stop
    # again: the same value (kept, when it holds no registers and no other items), read-only
    again = parse_stop_reply(_encode_stop(stop))
    assert again == stop
    if not stop.registers and not stop.info:
        assert again is parse_stop_reply(_encode_stop(stop))
        with pytest.raises(TypeError):
            again.registers[0] = b""  # type: ignore[index]


@given(thread_ids)
def test_thread_id_round_trip(thread: ThreadId) -> None:
    assert ThreadId.parse(str(thread)) == thread


@given(st.binary(max_size=80))
def test_stop_reply_garbage_gives_a_reply_or_a_protocol_error(payload: bytes) -> None:
    with contextlib.suppress(GdbProtocolError):
        parse_stop_reply(payload)


def test_qemu_supported() -> None:
    features = parse_supported(QEMU_SUPPORTED)
    assert features.packet_size == 4096
    assert features.supports("multiprocess")
    assert features.supports("qXfer:features:read")
    assert not features.supports("QStartNoAckMode")
    assert parse_supported(b"").packet_size == 400  # GDB's default when the stub is silent
    assert not parse_supported(b"swbreak-").supports("swbreak")


@pytest.mark.parametrize("payload", [b"PacketSize=zz", b"PacketSize=4", b"bogus"])
def test_bad_supported(payload: bytes) -> None:
    with pytest.raises(GdbProtocolError):
        parse_supported(payload)


@given(
    st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyzQX:", min_size=1, max_size=12),
        st.booleans() | st.text("0123456789abcdef", min_size=1, max_size=6),
        max_size=6,
    )
)
def test_supported_round_trip(features: dict[str, bool | str]) -> None:
    features.pop("PacketSize", None)
    text = ";".join(
        f"{k}={v}" if isinstance(v, str) else f"{k}{'+' if v else '-'}" for k, v in features.items()
    )
    assert dict(parse_supported(text.encode()).features) == features


def test_thread_lists() -> None:
    assert parse_thread_list(b"mp01.01,p01.02") == ([ThreadId(1, 1), ThreadId(2, 1)], False)
    assert parse_thread_list(b"l") == ([], True)
    with pytest.raises(GdbProtocolError):
        parse_thread_list(b"x")


def test_error_replies() -> None:
    error = GdbCommandError.from_reply(b"E14", "m0,4")
    assert isinstance(error, CommandError)
    assert (error.code, error.error_class, error.command) == (0x14, "E14", "m0,4")
    text = GdbCommandError.from_reply(b"E.no such memory", "m0,4")
    assert (text.code, text.desc) == (None, "no such memory")
    odd = GdbCommandError.from_reply(b"Ezz", "x")
    assert odd.code is None


@given(st.lists(thread_ids, max_size=6), st.booleans())
def test_thread_list_round_trip(threads: list[ThreadId], last: bool) -> None:
    body = ",".join(str(t) for t in threads)
    if not last and not threads:
        return  # "m" with nothing after it is not a list
    payload = (b"l" if last else b"m") + body.encode()
    assert parse_thread_list(payload) == (threads, last)


@given(st.binary(max_size=40))
def test_thread_list_and_error_garbage(payload: bytes) -> None:
    with contextlib.suppress(GdbProtocolError):
        parse_thread_list(payload)
    error = GdbCommandError.from_reply(b"E" + payload, "x")
    assert error.error_class.startswith("E")


@given(st.binary(max_size=300), st.booleans())
def test_hex_round_trip(data: bytes, upper: bool) -> None:
    text = data.hex().upper() if upper else data.hex()
    assert decode_hex(text.encode()) == decode_hex(text) == data


@given(st.text(max_size=40))
def test_hex_is_digits_only(text: str) -> None:
    digits = set("0123456789abcdefABCDEF")
    try:
        decoded = decode_hex(text.encode())
    except GdbProtocolError:
        assert len(text) % 2 or not set(text) <= digits  # odd, or not all digits (spaces too)
    else:
        assert set(text) <= digits
        assert decoded == bytes.fromhex(text)
