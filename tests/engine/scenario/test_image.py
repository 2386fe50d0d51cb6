"""The PNG reader and the region comparison of ``wait_screen`` (property-based)."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, strategies as st

from virtrio.engine.scenario._image import RgbImage, compare, decode_png
from virtrio.errors import ConfigError


@st.composite
def images(draw: st.DrawFn, max_side: int = 12) -> RgbImage:
    width = draw(st.integers(1, max_side))
    height = draw(st.integers(1, max_side))
    return RgbImage(width, height, draw(st.binary(min_size=width * height * 3,
                                                   max_size=width * height * 3)))  # fmt: skip


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _filtered_png(width: int, height: int, pixels: bytes, colour: int, bpp: int,
                  filters: list[int], palette: bytes = b"") -> bytes:  # fmt: skip
    """A PNG whose rows use the given filter types (the encoder side of the spec)."""
    stride = width * bpp
    out = bytearray()
    previous = bytes(stride)
    for y in range(height):
        row = pixels[y * stride : (y + 1) * stride]
        kind = filters[y % len(filters)]
        line = bytearray()
        for i, v in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up = previous[i]
            up_left = previous[i - bpp] if i >= bpp else 0
            predictor = [0, left, up, (left + up) >> 1, _paeth(left, up, up_left)][kind]
            line.append((v - predictor) & 0xFF)
        out += bytes([kind]) + line
        previous = row

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + (chunk(b"PLTE", palette) if palette else b"")
    return (
        b"\x89PNG\r\n\x1a\n"
        + body
        + chunk(b"IDAT", zlib.compress(bytes(out)))
        + chunk(b"IEND", b"")
    )


@given(images())
def test_our_png_reads_back(image: RgbImage) -> None:
    assert decode_png(image.to_png()) == image


@given(images(), st.lists(st.integers(0, 4), min_size=1, max_size=5), st.booleans())
def test_every_row_filter_rgb_and_rgba(image: RgbImage, filters: list[int], alpha: bool) -> None:
    if alpha:
        rgba = bytearray(image.width * image.height * 4)
        rgba[0::4], rgba[1::4], rgba[2::4] = image.rgb[0::3], image.rgb[1::3], image.rgb[2::3]
        png = _filtered_png(image.width, image.height, bytes(rgba), 6, 4, filters)
    else:
        png = _filtered_png(image.width, image.height, image.rgb, 2, 3, filters)
    assert decode_png(png) == image


@given(st.integers(1, 8), st.integers(1, 8), st.data())
def test_grey_and_palette(width: int, height: int, data: st.DataObject) -> None:
    grey = data.draw(st.binary(min_size=width * height, max_size=width * height))
    filters = data.draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    expected = bytes(v for g in grey for v in (g, g, g))
    assert decode_png(_filtered_png(width, height, grey, 0, 1, filters)).rgb == expected
    palette = data.draw(st.binary(min_size=3, max_size=3 * 16).filter(lambda p: len(p) % 3 == 0))
    n = len(palette) // 3
    indices = bytes(data.draw(st.lists(st.integers(0, n - 1), min_size=width * height,
                                       max_size=width * height)))  # fmt: skip
    image = decode_png(_filtered_png(width, height, indices, 3, 1, filters, palette))
    assert image.rgb == b"".join(palette[3 * i : 3 * i + 3] for i in indices)


@given(st.binary(max_size=64))
def test_garbage_is_a_config_error(data: bytes) -> None:
    with pytest.raises(ConfigError):
        decode_png(b"\x89PNG\r\n\x1a\n" + data)


@given(images(), st.data())
def test_compare_counts_pixels_over_the_threshold(image: RgbImage, data: st.DataObject) -> None:
    threshold = data.draw(st.integers(0, 255))
    other = bytearray(image.rgb)
    changed = data.draw(st.sets(st.integers(0, image.width * image.height - 1)))
    expected = 0
    for p in changed:
        delta = data.draw(st.integers(1, 255))
        other[3 * p + 1] = (other[3 * p + 1] + delta) & 0xFF
        if abs(other[3 * p + 1] - image.rgb[3 * p + 1]) > threshold:
            expected += 1
    result = compare(image, RgbImage(image.width, image.height, bytes(other)), threshold=threshold)
    assert result.differing == expected
    assert result.pixels == image.width * image.height
    reds = sum(result.diff.rgb[i : i + 3] == b"\xff\x00\x00" for i in range(0, len(other), 3))
    assert reds == expected  # a greyed pixel is at most 85: never pure red
    assert compare(image, image).differing == 0


def test_crop_and_bounds() -> None:
    image = RgbImage(3, 2, bytes(range(18)))
    assert image.crop(1, 1, 2, 1).rgb == bytes(range(12, 18))
    with pytest.raises(ConfigError, match="outside the 3x2 screen"):
        image.crop(2, 0, 2, 1)
    with pytest.raises(ConfigError, match="reference is 3x2, the region 2x1"):
        compare(image.crop(0, 0, 2, 1), image)
