"""Sans-I/O parsers: round trips, arbitrary splits, garbage gives a clear error (Hypothesis)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.spice import (
    DisplayState,
    Rect,
    SpiceLinkError,
    SpicePermissionError,
    SpiceProtocolError,
    Surface,
    combo_codes,
    key_code,
    text_strokes,
)
from virtrio.channels.spice._framing import AckWindow, Message, MessageReader, MessageWriter
from virtrio.channels.spice._link import (
    build_link_message,
    check_link_result,
    parse_link_header,
    parse_link_reply,
)
from virtrio.channels.spice._main import parse_channels_list, parse_main_init
from virtrio.channels.spice._port import parse_port_init
from virtrio.errors import ConfigError

messages = st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=8)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@given(messages, st.booleans(), st.lists(st.integers(0, 10_000), max_size=10))
def test_framing_round_trip_any_split(
    msgs: list[tuple[int, bytes]], mini: bool, cuts: list[int]
) -> None:
    writer = MessageWriter(mini_header=mini)
    wire = b"".join(writer.frame(t, b) for t, b in msgs if t != 8)
    reader = MessageReader(mini_header=mini)
    got = [m for part in split(wire, cuts) for m in reader.feed(part)]
    assert [(m.type, m.body) for m in got] == [(t, b) for t, b in msgs if t != 8]
    assert reader.pending == 0


big_messages = st.lists(
    st.tuples(st.integers(0, 0xFFFF).filter(lambda t: t != 8), st.binary(max_size=300)),
    max_size=8,
)


@given(big_messages, st.booleans(), st.lists(st.integers(1, 400), max_size=30))
def test_framing_read_into_buffer_any_split(
    msgs: list[tuple[int, bytes]], mini: bool, sizes: list[int]
) -> None:
    """buffer()/filled() as a socket's recv_into drives them, with a small reusable buffer so
    that bodies are read in place (>= 64 bytes), partial headers and compaction all happen."""
    writer = MessageWriter(mini_header=mini)
    frames = [writer.frame(t, b) for t, b in msgs]
    wire = memoryview(b"".join(frames))
    reader = MessageReader(mini_header=mini, buffer_size=160, in_place=64)
    got: list[Message] = []
    sizes = sizes or [len(wire) + 1]
    given_bytes = 0
    while wire:
        with reader.buffer() as target:
            assert len(target) > 0
            n = min(len(target), len(wire), sizes[len(got) % len(sizes)])
            target[:n] = wire[:n]
        wire = wire[n:]
        given_bytes += n
        got.extend(reader.filled(n))
        assert reader.pending == given_bytes - sum(len(f) for f in frames[: len(got)])
    assert [(m.type, bytes(m.body)) for m in got] == msgs
    assert all(isinstance(m.body, bytearray) == (len(m.body) >= 64) for m in got)
    assert reader.pending == 0


def test_framing_in_place_bound() -> None:
    with pytest.raises(ValueError, match="in_place"):
        MessageReader(mini_header=True, buffer_size=100, in_place=51)


def test_mini_list_yields_sub_messages_first() -> None:
    sub1 = struct.pack("<HI", 5, 1) + b"\x00"
    sub2 = struct.pack("<HI", 105, 2) + b"ab"
    body = struct.pack("<HII", 2, 10, 10 + len(sub1)) + sub1 + sub2
    reader = MessageReader(mini_header=True)
    got = list(reader.feed(struct.pack("<HI", 8, len(body)) + body))
    assert got == [Message(5, b"\x00", sub=True), Message(105, b"ab", sub=True), Message(8, b"")]


@given(st.binary(max_size=200))
def test_list_garbage_is_a_protocol_error(body: bytes) -> None:
    reader = MessageReader(mini_header=True)
    with contextlib.suppress(SpiceProtocolError):
        list(reader.feed(struct.pack("<HI", 8, len(body)) + body))


def test_oversized_message_rejected() -> None:
    with pytest.raises(SpiceProtocolError, match="exceeds"):
        list(MessageReader(mini_header=True).feed(struct.pack("<HI", 300, 2**31)))


def test_ack_window() -> None:
    acks = AckWindow()
    assert acks.on_message(Message(3, struct.pack("<II", 7, 2))) == [(1, struct.pack("<I", 7))]
    assert acks.on_message(Message(300, b"")) == []
    assert acks.on_message(Message(300, b"")) == [(2, b"")]
    assert acks.on_message(Message(300, b"", sub=True)) == []


def test_link_message_layout() -> None:
    wire = build_link_message(0, 1, 0, (0, 1, 3), ())
    assert wire.hex() == (
        "52454451020000000200000016000000000000000100010000000000000012000000" + "0b000000"
    )


@given(st.binary(min_size=16, max_size=16))
def test_link_header_garbage(data: bytes) -> None:
    try:
        size = parse_link_header(data)
    except SpiceProtocolError:
        return
    assert 4 <= size <= 65536


@given(st.binary(max_size=300))
def test_link_reply_garbage(data: bytes) -> None:
    with contextlib.suppress(SpiceProtocolError, SpiceLinkError):
        parse_link_reply(data)


def test_link_errors_are_mapped() -> None:
    with pytest.raises(SpicePermissionError, match="password"):
        check_link_result(struct.pack("<I", 7))
    with pytest.raises(SpiceLinkError, match="TLS") as info:
        parse_link_reply(struct.pack("<I", 5) + bytes(174))
    assert info.value.code == 5
    with pytest.raises(SpiceLinkError, match="unknown error 99"):
        check_link_result(struct.pack("<I", 99))
    check_link_result(bytes(4))


@given(st.binary(max_size=64))
def test_main_parsers_garbage(body: bytes) -> None:
    for parse in (parse_main_init, parse_channels_list, parse_port_init):
        with contextlib.suppress(SpiceProtocolError):
            parse(body)


def test_channels_list() -> None:
    assert parse_channels_list(struct.pack("<I", 2) + bytes([2, 0, 3, 0])) == [(2, 0), (3, 0)]


def bitmap_copy(width: int, height: int, pixels: bytes, top_down: bool = True) -> bytes:
    base = struct.pack("<Iiiii", 0, 0, 0, height, width) + b"\x00"
    image_ptr = len(base) + 4 + 16 + 2 + 1 + 13
    body = base + struct.pack("<I", image_ptr) + struct.pack("<iiii", 0, 0, height, width)
    body += struct.pack("<HB", 8, 0) + bytes(13)
    body += struct.pack("<QBBII", 0, 0, 0, width, height)
    body += struct.pack("<BBIIII", 8, 4 if top_down else 0, width, height, width * 4, 0)
    return body + pixels


def test_display_draw_copy_fill_copy_bits() -> None:
    state = DisplayState()
    state.handle(314, struct.pack("<IIIII", 0, 4, 2, 32, 1))
    pixels = bytes(range(32))
    assert state.handle(304, bitmap_copy(4, 2, pixels)) is not None
    assert state.primary is not None
    assert bytes(state.primary.pixels) == pixels
    state.handle(304, bitmap_copy(4, 2, pixels, top_down=False))
    assert bytes(state.primary.pixels) == pixels[16:] + pixels[:16]
    fill = struct.pack("<Iiiii", 0, 0, 0, 1, 1) + b"\x00" + b"\x01" + struct.pack("<I", 0x112233)
    state.handle(302, fill + bytes(15))
    assert bytes(state.primary.pixels[:4]) == b"\x33\x22\x11\xff"
    copy = struct.pack("<Iiiii", 0, 1, 0, 2, 1) + b"\x00" + struct.pack("<ii", 0, 0)
    state.handle(104, copy)
    assert bytes(state.primary.pixels[16:20]) == b"\x33\x22\x11\xff"
    state.handle(102, b"")
    assert state.marked
    png = state.primary.to_png()
    assert png.startswith(b"\x89PNG")


@given(st.integers(100, 400), st.binary(max_size=200))
def test_display_garbage_is_a_protocol_error(mtype: int, body: bytes) -> None:
    state = DisplayState()
    state.handle(314, struct.pack("<IIIII", 0, 8, 8, 32, 1))
    with contextlib.suppress(SpiceProtocolError):
        state.handle(mtype, body)


def test_keys() -> None:
    assert key_code("a") == 0x1E
    assert key_code("Delete") == 0x53E0
    assert combo_codes("ctrl-alt-delete") == [0x1D, 0x38, 0x53E0]
    assert combo_codes("-") == [0x0C]
    assert text_strokes("aB!") == [[0x1E], [0x2A, 0x30], [0x2A, 0x02]]
    with pytest.raises(ConfigError, match="unknown key"):
        key_code("nosuchkey")
    with pytest.raises(ConfigError, match="US keyboard"):
        text_strokes("é")


def placed_copy(
    left: int, top: int, width: int, height: int, pixels: bytes, *, top_down: bool, bpp: int
) -> bytes:
    """DRAW_COPY of a ``width`` x ``height`` bitmap (32- or 24-bit) to the box at left, top."""
    base = struct.pack("<Iiiii", 0, top, left, top + height, left + width) + b"\x00"
    image_ptr = len(base) + 4 + 16 + 2 + 1 + 13
    body = base + struct.pack("<I", image_ptr) + struct.pack("<iiii", 0, 0, height, width)
    body += struct.pack("<HB", 8, 0) + bytes(13)
    body += struct.pack("<QBBII", 0, 0, 0, width, height)
    fmt = 8 if bpp == 4 else 7
    flags = 4 if top_down else 0
    body += struct.pack("<BBIIII", fmt, flags, width, height, width * bpp, 0)
    return body + pixels


@given(
    st.integers(0, 7),
    st.integers(0, 5),
    st.integers(1, 8),
    st.integers(1, 6),
    st.booleans(),
    st.sampled_from([3, 4]),
    st.data(),
)
def test_display_draw_copy_sub_rect_matches_pixel_by_pixel(
    left: int, top: int, width: int, height: int, top_down: bool, bpp: int, data: st.DataObject
) -> None:
    surface_w, surface_h = 8, 6
    pixels = data.draw(st.binary(min_size=width * height * bpp, max_size=width * height * bpp))
    state = DisplayState()
    state.handle(314, struct.pack("<IIIII", 0, surface_w, surface_h, 32, 1))
    state.handle(304, placed_copy(left, top, width, height, pixels, top_down=top_down, bpp=bpp))
    expected = bytearray(surface_w * surface_h * 4)
    for y in range(top, min(top + height, surface_h)):
        row = y - top if top_down else height - 1 - (y - top)
        for x in range(left, min(left + width, surface_w)):
            src = (row * width + (x - left)) * bpp
            dst = (y * surface_w + x) * 4
            expected[dst : dst + 3] = pixels[src : src + 3]
            if bpp == 4:
                expected[dst + 3] = pixels[src + 3]
    assert state.primary is not None
    assert state.primary.pixels == expected


def clipped_copy(
    box: tuple[int, int, int, int],
    src: tuple[int, int],
    bitmap: tuple[int, int, int, bytes],
    clips: list[tuple[int, int, int, int]] | None,
    *,
    top_down: bool,
    bpp: int,
) -> bytes:
    """DRAW_COPY of the box (left, top, right, bottom) from ``src`` (left, top) of a bitmap
    (width, height, stride, data), optionally clipped to rects (left, top, right, bottom)."""
    left, top, right, bottom = box
    width, height, stride, data = bitmap
    base = struct.pack("<Iiiii", 0, top, left, bottom, right)
    if clips is None:
        base += b"\x00"
    else:
        base += b"\x01" + struct.pack("<I", len(clips))
        base += b"".join(struct.pack("<iiii", t, x, b, r) for x, t, r, b in clips)
    image_ptr = len(base) + 4 + 16 + 2 + 1 + 13
    area = struct.pack("<iiii", src[1], src[0], src[1] + bottom - top, src[0] + right - left)
    body = base + struct.pack("<I", image_ptr) + area + struct.pack("<HB", 8, 0) + bytes(13)
    body += struct.pack("<QBBII", 0, 0, 0, width, height)
    fmt = 8 if bpp == 4 else 7
    body += struct.pack("<BBIIII", fmt, 4 if top_down else 0, width, height, stride, 0)
    return body + data


rects = st.tuples(st.integers(-2, 9), st.integers(-2, 7), st.integers(0, 11), st.integers(0, 9))


@given(
    st.sampled_from([(8, 6), (7, 5), (16, 4)]),
    st.integers(1, 8),
    st.integers(1, 6),
    st.integers(0, 3),
    st.integers(0, 2),
    st.integers(0, 9),
    st.none() | st.lists(rects, max_size=3),
    st.booleans(),
    st.sampled_from([3, 4]),
    st.data(),
)
def test_display_draw_copy_stride_clips_and_row_order_match_pixel_by_pixel(
    surface: tuple[int, int],
    box_w: int,
    box_h: int,
    src_x: int,
    src_y: int,
    pad: int,
    clips: list[tuple[int, int, int, int]] | None,
    top_down: bool,
    bpp: int,
    data: st.DataObject,
) -> None:
    """A sub-rect of a padded bitmap, either row order, clipped: the decoder's fast copies
    (whole rectangles) give what a pixel-at-a-time copy gives."""
    surface_w, surface_h = surface
    left = data.draw(st.integers(-1, surface_w), label="left")
    top = data.draw(st.integers(-1, surface_h), label="top")
    width, height = src_x + box_w + data.draw(st.integers(0, 2)), src_y + box_h
    stride = width * bpp + pad
    pixels = data.draw(st.binary(min_size=stride * height, max_size=stride * height))
    box = (left, top, left + box_w, top + box_h)
    state = DisplayState()
    state.handle(314, struct.pack("<IIIII", 0, surface_w, surface_h, 32, 1))
    before = bytes(b"\x5a" * surface_w * surface_h * 4)
    assert state.primary is not None
    state.primary.pixels[:] = before
    message = clipped_copy(
        box, (src_x, src_y), (width, height, stride, pixels), clips, top_down=top_down, bpp=bpp
    )
    state.handle(304, message)
    expected = bytearray(before)
    for y in range(max(0, top), min(top + box_h, surface_h)):
        for x in range(max(0, left), min(left + box_w, surface_w)):
            if clips is not None and not any(
                cl <= x < cr and ct <= y < cb for cl, ct, cr, cb in clips
            ):
                continue
            row = src_y + (y - top)
            row = row if top_down else height - 1 - row
            at = row * stride + (src_x + x - left) * bpp
            pixel = pixels[at : at + bpp]
            expected[(y * surface_w + x) * 4 : (y * surface_w + x) * 4 + 4] = (
                pixel if bpp == 4 else pixel + b"\0"
            )
    assert state.primary.pixels == expected


@given(st.integers(1, 9), st.integers(1, 6), rects, st.data())
def test_surface_region_matches_rows(
    width: int, height: int, rect: tuple[int, int, int, int], data: st.DataObject
) -> None:
    pixels = data.draw(st.binary(min_size=width * height * 4, max_size=width * height * 4))
    surface = Surface(width, height, bytearray(pixels))
    left, top, right, bottom = rect
    r = surface.clip(Rect(left, top, right, bottom))
    expected = b"".join(
        pixels[(y * width + r.left) * 4 : (y * width + r.right) * 4]
        for y in range(r.top, r.bottom)
        if r.right > r.left
    )
    assert surface.region(Rect(left, top, right, bottom)) == expected
