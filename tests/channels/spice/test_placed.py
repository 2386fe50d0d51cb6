"""Bodies read straight into the framebuffer (MessageReader.placer, DisplayState.place)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from virtrio.channels.spice import DisplayState
from virtrio.channels.spice._framing import Message, MessageReader

MSG_DRAW_COPY = 304


def frame(mtype: int, body: bytes) -> bytes:
    return struct.pack("<HI", mtype, len(body)) + body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read(reader: MessageReader, chunks: list[bytes]) -> list[Message]:
    return [msg for chunk in chunks for msg in reader.feed(chunk)]


@given(
    st.lists(st.tuples(st.booleans(), st.binary(min_size=0, max_size=300)), max_size=6),
    st.integers(1, 40),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_placer_gets_the_tail_any_split(
    bodies: list[tuple[bool, bytes]], offset: int, cuts: list[int]
) -> None:
    """A placed body's tail lands in its target, its head in the message; others unchanged."""
    targets: list[bytearray] = []

    def placer(mtype: int, head: memoryview, size: int) -> tuple[int, memoryview] | None:
        if mtype != 7 or size <= offset:
            return None
        assert len(head) <= size
        targets.append(bytearray(size - offset))
        return offset, memoryview(targets[-1])

    reader = MessageReader(mini_header=True, buffer_size=256, in_place=64)
    reader.placer = placer
    data = b"".join(frame(7 if place else 9, body) for place, body in bodies)
    got = read(reader, split(data, cuts))
    assert len(got) == len(bodies)
    placed = iter(targets)
    for msg, (place, body) in zip(got, bodies, strict=True):
        if msg.placed:
            assert place
            assert len(body) >= 64
            assert len(body) > offset
            assert bytes(msg.body) == body[:offset]
            assert bytes(next(placed)) == body[offset:]
        else:
            assert bytes(msg.body) == body
    assert next(placed, None) is None
    assert reader.pending == 0


def test_placer_target_must_fit() -> None:
    reader = MessageReader(mini_header=True, buffer_size=256, in_place=64)
    reader.placer = lambda mtype, head, size: (4, memoryview(bytearray(size)))
    with pytest.raises(ValueError, match="does not fit"):
        list(reader.feed(frame(7, bytes(200))[:150]))


def draw_copy(
    box: tuple[int, int, int, int],
    bitmap: tuple[int, int, int, bytes],
    *,
    top_down: bool = True,
    src: tuple[int, int] = (0, 0),
    clip: bool = False,
) -> bytes:
    """A DRAW_COPY of ``bitmap`` (width, height, stride, pixels) into box (l, t, r, b)."""
    left, top, right, bottom = box
    width, height, stride, pixels = bitmap
    base = struct.pack("<Iiiii", 0, top, left, bottom, right)
    base += (
        struct.pack("<BI", 1, 1) + struct.pack("<iiii", top, left, bottom, right) if clip else b"\0"
    )
    image_ptr = len(base) + 4 + 16 + 2 + 1 + 13
    body = base + struct.pack("<I", image_ptr)
    body += struct.pack("<iiii", src[1], src[0], src[1] + bottom - top, src[0] + right - left)
    body += struct.pack("<HB", 8, 0) + bytes(13)
    body += struct.pack("<QBBII", 0, 0, 0, width, height)
    body += struct.pack("<BBIIII", 8, 4 if top_down else 0, width, height, stride, 0)
    return body + pixels


@st.composite
def copies(draw: st.DrawFn) -> tuple[int, int, bytes, bool]:
    """A surface size and a DRAW_COPY onto it, placeable (the whole surface) or not."""
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 16))
    if draw(st.booleans()):
        left, top, cols, rows = 0, 0, width, height
    else:
        top = draw(st.integers(0, height - 1))
        rows = draw(st.integers(1, height - top))
        left = draw(st.sampled_from([0, 0, min(1, width - 1)]))
        cols = width - left if draw(st.booleans()) else draw(st.integers(1, width - left))
    stride = cols * 4 + draw(st.sampled_from([0, 0, 4]))
    top_down = draw(st.booleans())
    clip = draw(st.sampled_from([False, False, True]))
    pixels = draw(st.binary(min_size=stride * rows, max_size=stride * rows))
    box = (left, top, left + cols, top + rows)
    body = draw_copy(box, (cols, rows, stride, pixels), top_down=top_down, clip=clip)
    whole = (left, top, cols, rows) == (0, 0, width, height)
    placeable = whole and (stride, top_down, clip) == (width * 4, True, False)
    return width, height, body, placeable


@given(copies(), st.lists(st.integers(0, 10_000), max_size=8))
def test_placed_draw_copy_matches_drawing_it(
    case: tuple[int, int, bytes, bool], cuts: list[int]
) -> None:
    """Through the placer or not, any split, the framebuffer ends as handle() draws it."""
    width, height, body, placeable = case
    create = struct.pack("<IIIII", 0, width, height, 32, 1)
    expected, state = DisplayState(), DisplayState()
    for s in (expected, state):
        s.handle(314, create)
        assert s.primary is not None
        s.primary.pixels[:] = bytes(range(256)) * (len(s.primary.pixels) // 256) + bytes(
            len(s.primary.pixels) % 256
        )
    want = expected.handle(MSG_DRAW_COPY, body)
    reader = MessageReader(mini_header=True, buffer_size=256, in_place=64)
    reader.placer = state.place
    before = state.generation
    (msg,) = read(reader, split(frame(MSG_DRAW_COPY, body), cuts))
    assert state.generation == before  # nothing accounted before the message is whole
    assert state.handle(msg.type, msg.body, placed=msg.placed) == want
    assert state.generation == before + 1
    assert state.primary is not None
    assert expected.primary is not None
    assert state.primary.pixels == expected.primary.pixels
    # placed only if placeable (and not whole in the reader's buffer with its header)
    assert placeable or not msg.placed


def test_place_takes_a_whole_surface_top_down_copy() -> None:
    state = DisplayState()
    state.handle(314, struct.pack("<IIIII", 0, 4, 2, 32, 1))
    body = draw_copy((0, 0, 4, 2), (4, 2, 16, bytes(range(32))))
    with memoryview(body) as head:
        where = state.place(MSG_DRAW_COPY, head, len(body))
    assert where is not None
    offset, target = where
    assert offset == len(body) - 32
    assert len(target) == 32
    target[:] = body[offset:]
    target.release()
    primary = state.primary
    assert primary is not None
    assert primary.pixels == bytes(32)  # not before the message is whole
    assert state.handle(MSG_DRAW_COPY, body[:offset], placed=True) is not None
    assert primary.pixels == bytes(range(32))
    for other in (
        draw_copy((0, 0, 4, 2), (4, 2, 16, bytes(32)), top_down=False),
        draw_copy((0, 0, 4, 2), (4, 2, 16, bytes(32)), clip=True),
        draw_copy((0, 0, 4, 2), (4, 2, 20, bytes(40))),
        draw_copy((0, 1, 4, 2), (4, 1, 16, bytes(16))),
        draw_copy((0, 0, 2, 2), (2, 2, 8, bytes(16))),
        draw_copy((0, 0, 4, 2), (4, 2, 16, bytes(32)))[:40],  # head too short to tell
    ):
        with memoryview(other) as head:
            assert state.place(MSG_DRAW_COPY, head, len(other)) is None


def test_reader_places_whole_frames_split_anywhere() -> None:
    """Frames after frames through the two buffers, each whole once its message is."""
    frames = [bytes([i]) * 768 for i in range(1, 4)]
    bodies = [draw_copy((0, 0, 16, 12), (16, 12, 64, f)) for f in frames]
    stream = b"".join(frame(MSG_DRAW_COPY, body) for body in bodies)
    for cut in range(0, len(stream), 89):
        state = DisplayState()
        state.handle(314, struct.pack("<IIIII", 0, 16, 12, 32, 1))
        reader = MessageReader(mini_header=True, buffer_size=256, in_place=64)
        reader.placer = state.place
        seen = []
        # each message is taken (and its frame swapped in) before the reader goes on
        for msg in (m for chunk in split(stream, [cut, cut + 300]) for m in reader.feed(chunk)):
            assert msg.placed
            assert state.handle(msg.type, msg.body, placed=True) is not None
            assert state.primary is not None
            seen.append(bytes(state.primary.pixels))
        assert seen == frames
