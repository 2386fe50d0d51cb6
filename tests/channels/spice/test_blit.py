"""Rectangle copies (``_blit``) against a plain per-row copy, for any strides and row order."""

from __future__ import annotations

from hypothesis import given, strategies as st

from virtrio.channels.spice._blit import copy_rect, expand_bgr


def reference(
    dst: bytearray, d: int, d_stride: int, src: bytes, s: int, s_stride: int, width: int, rows: int
) -> None:
    for i in range(rows):
        dst[d + i * d_stride : d + i * d_stride + width] = src[
            s + i * s_stride : s + i * s_stride + width
        ]


Copy = tuple[int, int, int, int, int, int, int, int, bool, bool]


@st.composite
def copies(draw: st.DrawFn) -> Copy:
    """A copy whose every row lies in both buffers; strides often multiples of the row."""
    width = draw(st.integers(1, 24))
    rows = draw(st.integers(1, 9))
    # strides: a multiple of the row (the C path) or any length at least the row (per row)
    d_stride = draw(st.sampled_from([width, 2 * width, 3 * width]) | st.integers(width, 80))
    s_stride = draw(st.sampled_from([width, 2 * width, 5 * width]) | st.integers(width, 80))
    upwards = draw(st.booleans())
    d = draw(st.integers(0, 40))
    s_low = draw(st.integers(0, 40))
    dst_len = d + (rows - 1) * d_stride + width + draw(st.integers(0, 30))
    src_len = s_low + (rows - 1) * s_stride + width + draw(st.integers(0, 30))
    # bottom-up: the first row read is the highest one
    s = s_low + (rows - 1) * s_stride if upwards else s_low
    writable = draw(st.booleans())
    return width, rows, d_stride, s_stride, d, s, dst_len, src_len, upwards, writable


@given(copies())
def test_copy_rect_matches_a_copy_per_row(case: Copy) -> None:
    width, rows, d_stride, s_stride, d, s, dst_len, src_len, upwards, writable = case
    src = bytes((i * 7 + 3) & 0xFF for i in range(src_len))
    step = -s_stride if upwards else s_stride
    expected = bytearray(b"\xee" * dst_len)
    reference(expected, d, d_stride, src, s, step, width, rows)
    got = bytearray(b"\xee" * dst_len)
    copy_rect(got, d, d_stride, bytearray(src) if writable else src, s, step, width, rows)
    assert got == expected


def test_copy_rect_qemu_block() -> None:
    """The shape QEMU sends: a 32-pixel column of a 1024 x 768 surface, top-down and up."""
    block = bytes(range(256)) * (128 * 768 // 256)
    for step, start in ((128, 0), (-128, 767 * 128)):
        got = bytearray(1024 * 768 * 4)
        copy_rect(got, 5 * 128, 4096, bytearray(block), start, step, 128, 768)
        expected = bytearray(1024 * 768 * 4)
        reference(expected, 5 * 128, 4096, block, start, step, 128, 768)
        assert got == expected
        got.append(0)  # the copy let go of the framebuffer: it can still be resized


@given(st.binary(max_size=90), st.integers(0, 5))
def test_expand_bgr(data: bytes, offset: int) -> None:
    pixels = max(0, len(data) - offset) // 3
    out = expand_bgr(data, offset, pixels)
    assert len(out) == pixels * 4
    for i in range(pixels):
        assert out[i * 4 : i * 4 + 4] == data[offset + i * 3 : offset + i * 3 + 3] + b"\0"
