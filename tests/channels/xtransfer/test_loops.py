"""xtransport's per-packet loops: the C ones (``_speedups.c``) give exactly what the Python
reference gives, on good input, cut input and garbage."""

from __future__ import annotations

import subprocess
import sys
import zlib
from types import ModuleType

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.xtransfer import _loops
from virtrio.channels.xtransfer._codec import encode_message
from virtrio.channels.xtransfer._wire import HEADER, HEADER_SIZE, crc32


def _compiled() -> ModuleType:
    # make setup builds the C loops (VIRTRIO_REQUIRE_SPEEDUPS=1): without them these fail
    assert _loops._speedups is not None, "xtransport's C loops are not built"
    return _loops._speedups


def test_the_c_loops_are_built() -> None:
    assert _loops.COMPILED
    assert _loops.parse_pieces is not _loops.parse_pieces_py


def test_the_environment_can_ask_for_the_python_loops() -> None:
    code = "from virtrio.channels.xtransfer import _loops; print(_loops.COMPILED)"
    env = {"VIRTRIO_XTRANSPORT_PURE": "1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def _encoded(encode: object, data: bytes, max_payload: int, seq: int) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = [b"already there"]
    encode(memoryview(data), max_payload, seq, crc32, parts)  # type: ignore[operator]
    return parts


@given(
    data=st.binary(max_size=2000),
    max_payload=st.integers(1, 700),
    seq=st.integers(0, 2**32 - 1),
)
def test_encoding_matches_the_python_loop(data: bytes, max_payload: int, seq: int) -> None:
    ours = _encoded(_compiled().encode_data_packets, data, max_payload, seq)
    reference = _encoded(_loops.encode_data_packets_py, data, max_payload, seq)
    assert [bytes(part) for part in ours] == [bytes(part) for part in reference]
    assert [type(part) for part in ours] == [type(part) for part in reference]
    for piece in ours[2::2]:
        assert isinstance(piece, memoryview)
        assert piece.obj is data


def test_encoding_numbers_packets_modulo_two_to_the_32() -> None:
    parts = _encoded(_compiled().encode_data_packets, b"abc", 1, 2**32 - 2)
    seqs = [HEADER.unpack(header)[3] for header in parts[1::2]]
    assert seqs == [2**32 - 2, 2**32 - 1, 0]


def test_encoding_a_non_contiguous_view_fails_as_memoryview_does() -> None:
    with pytest.raises(BufferError):
        _compiled().encode_data_packets(memoryview(b"abcdef")[::2], 2, 0, crc32, [])


@pytest.mark.parametrize("max_payload", [0, 65536])
def test_encoding_refuses_an_impossible_payload_size(max_payload: int) -> None:
    with pytest.raises(ValueError, match="max_payload"):
        _compiled().encode_data_packets(memoryview(b"abc"), max_payload, 0, crc32, [])


def _header_offsets(wire: bytes | bytearray) -> list[int]:
    offsets, offset = [], 0
    while offset + HEADER_SIZE <= len(wire):
        offsets.append(offset)
        offset += HEADER_SIZE + HEADER.unpack_from(wire, offset)[4]
    return offsets


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Messages' packets as they come off the wire (a multi-packet one, then one that may fit
    in a Data packet), maybe cut, maybe damaged: in any byte, or in a header's version, type
    or length."""
    max_payload = draw(st.integers(1, 300))
    wire = bytearray()
    for min_size in (max_payload + 1, 0):
        data = draw(st.binary(min_size=min_size, max_size=2000))
        wire += encode_message(memoryview(data), max_payload, draw(st.integers(0, 9)), 1)
    headers = _header_offsets(wire)
    for _ in range(draw(st.integers(0, 3)) // 2):
        at = draw(st.sampled_from(headers)) + draw(st.sampled_from([4, 5, 10, 11]))
        wire[at] = draw(st.integers(0, 3) | st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(wire) - 1))
        wire[at] = draw(st.integers(0, 255))
    cut = draw(st.just(len(wire)) | st.integers(0, len(wire)))
    return bytes(wire[:cut]) + draw(st.binary(max_size=40))


@given(
    wire=streams(),
    offset=st.just(HEADER_SIZE + 32) | st.integers(0, 80),  # mostly the first MessageData
    count=st.integers(0, 12) | st.just(99),
    view_min=st.sampled_from([0, 1, 512, 70000]) | st.integers(0, 900),
)
def test_parsing_matches_the_python_loop(
    wire: bytes, offset: int, count: int, view_min: int
) -> None:
    results = []
    for parse in (_compiled().parse_pieces, _loops.parse_pieces_py):
        pieces: list[bytes | memoryview] = []
        stopped = parse(wire, memoryview(wire), offset, count, view_min, crc32, pieces)
        results.append((stopped, [(type(piece), bytes(piece)) for piece in pieces]))
    assert results[0] == results[1]


def test_parsing_takes_pieces_as_views_or_copies_by_size() -> None:
    wire = encode_message(memoryview(b"x" * 1112 + b"y" * 300), 600, 0, 1)
    start = HEADER_SIZE + 32  # after the MessageHead
    pieces: list[bytes | memoryview] = []
    stopped = _compiled().parse_pieces(wire, memoryview(wire), start, 5, 512, crc32, pieces)
    assert stopped == (len(wire), 3, 1412)
    assert [len(piece) for piece in pieces] == [600, 600, 212]
    assert all(isinstance(piece, memoryview) and piece.obj is wire for piece in pieces[:2])
    assert type(pieces[2]) is bytes
    assert pieces[2] == b"y" * 212
    pieces.clear()
    _compiled().parse_pieces(wire, memoryview(wire), start, 5, 600, crc32, pieces)
    assert isinstance(pieces[0], memoryview)  # exactly view_min long: a view


def test_parsing_stops_before_a_payload_with_a_bad_crc() -> None:
    wire = bytearray(encode_message(memoryview(b"a" * 30), 10, 0, 1))
    second = HEADER_SIZE + 32 + HEADER_SIZE + 10
    wire[second + HEADER_SIZE] ^= 1
    data = bytes(wire)
    pieces: list[bytes | memoryview] = []
    stopped = _compiled().parse_pieces(
        data, memoryview(data), HEADER_SIZE + 32, 3, 0, crc32, pieces
    )
    assert stopped == (second, 1, 10)


def test_the_c_loops_call_a_crc_function_they_are_given_without_zlib_ng() -> None:
    # zlib's crc32 is what _wire falls back to without zlib-ng: the C loops call it through
    # Python, and get the same packets
    code = """
import sys
sys.modules["zlib_ng"] = None
from virtrio.channels.xtransfer import _loops, _wire
import zlib
assert _wire.crc32 is zlib.crc32 and _loops.COMPILED
parts = []
_loops.encode_data_packets(memoryview(b"hello world"), 4, 0, zlib.crc32, parts)
data = b"".join(parts)
pieces = []
print(_loops.parse_pieces(data, memoryview(data), 0, 9, 0, zlib.crc32, pieces), b"".join(pieces))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "(59, 3, 11) b'hello world'", out.stderr
    assert zlib.crc32(b"hello world") == crc32(b"hello world")


def test_parsing_takes_at_most_count_packets() -> None:
    wire = encode_message(memoryview(b"n" * 25), 10, 0, 1)
    pieces: list[bytes | memoryview] = []
    stopped = _compiled().parse_pieces(wire, memoryview(wire), 48, 2, 0, crc32, pieces)
    assert stopped == (48 + 2 * (HEADER_SIZE + 10), 2, 20)


def test_parsing_stops_at_the_next_message() -> None:
    first = encode_message(memoryview(b"m" * 25), 10, 0, 1)
    for second in (encode_message(memoryview(b"d"), 10, 4, 2), first):
        wire = first + second
        pieces: list[bytes | memoryview] = []
        stopped = _compiled().parse_pieces(
            wire, memoryview(wire), HEADER_SIZE + 32, 99, 0, crc32, pieces
        )
        assert stopped == (len(first), 3, 25)


def test_parsing_stops_at_a_header_of_another_version() -> None:
    wire = bytearray(encode_message(memoryview(b"v" * 25), 10, 0, 1))
    wire[HEADER_SIZE + 32 + 4] = 2
    data = bytes(wire)
    pieces: list[bytes | memoryview] = []
    assert _compiled().parse_pieces(data, memoryview(data), 48, 9, 0, crc32, pieces) == (48, 0, 0)


def test_parsing_stops_at_a_packet_the_read_cuts() -> None:
    wire = encode_message(memoryview(b"c" * 25), 10, 0, 1)[:-1]
    pieces: list[bytes | memoryview] = []
    stopped = _compiled().parse_pieces(wire, memoryview(wire), 48, 9, 0, crc32, pieces)
    assert stopped == (48 + 2 * (HEADER_SIZE + 10), 2, 20)
