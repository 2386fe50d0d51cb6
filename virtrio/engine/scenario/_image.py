"""RGB images for ``wait_screen``: PNG in and out (zlib only, no imaging library), regions, and
the comparison of a screen region with a reference.

The comparison has two knobs: ``threshold``, the largest difference of any of a pixel's three
channels (0-255) under which the pixel still counts as the same, and ``tolerance``, the fraction
of the region's pixels (0.0-1.0) that may differ for the region to match.
"""

from __future__ import annotations

import struct
import zlib

import attrs

from virtrio.channels.spice import encode_png
from virtrio.errors import ConfigError

__all__ = ["Comparison", "RgbImage", "compare", "decode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> samples per pixel (8-bit depth only)
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_THIRD = bytes(v // 3 for v in range(256))


@attrs.frozen
class RgbImage:
    """``width`` x ``height`` pixels, 3 bytes each (R, G, B), rows top-down."""

    width: int
    height: int
    rgb: bytes

    @classmethod
    def from_bgrx(cls, width: int, height: int, bgrx: bytes | bytearray) -> RgbImage:
        """From a Spice surface's BGRX pixels."""
        rgb = bytearray(width * height * 3)
        rgb[0::3] = bgrx[2::4]
        rgb[1::3] = bgrx[1::4]
        rgb[2::3] = bgrx[0::4]
        return cls(width, height, bytes(rgb))

    def crop(self, x: int, y: int, width: int, height: int) -> RgbImage:
        """The region at ``x``, ``y`` (it must lie inside the image).

        Raises:
            ConfigError: the region is empty or reaches outside the image.
        """
        if width <= 0 or height <= 0 or x < 0 or y < 0:
            raise ConfigError(f"region [{x}, {y}, {width}, {height}]: empty or negative")
        if x + width > self.width or y + height > self.height:
            raise ConfigError(
                f"region [{x}, {y}, {width}, {height}] reaches outside the "
                f"{self.width}x{self.height} screen"
            )
        stride = self.width * 3
        rows = (
            self.rgb[(y + r) * stride + x * 3 : (y + r) * stride + (x + width) * 3]
            for r in range(height)
        )
        return RgbImage(width, height, b"".join(rows))

    def to_png(self) -> bytes:
        """The image as an 8-bit RGB PNG."""
        bgrx = bytearray(self.width * self.height * 4)
        bgrx[0::4] = self.rgb[2::3]
        bgrx[1::4] = self.rgb[1::3]
        bgrx[2::4] = self.rgb[0::3]
        return encode_png(self.width, self.height, bgrx)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> None:
    n = len(line)
    if kind == 0:
        return
    if kind == 1:
        for i in range(bpp, n):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(n):
            line[i] = (line[i] + previous[i]) & 0xFF
    elif kind == 3:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(n):
            left = line[i - bpp] if i >= bpp else 0
            up_left = previous[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, previous[i], up_left)) & 0xFF
    else:
        raise ConfigError(f"PNG: unknown row filter {kind}")


def decode_png(data: bytes) -> RgbImage:
    """Decode an 8-bit, non-interlaced PNG (grey, grey+alpha, RGB, RGBA or palette) to RGB;
    alpha is dropped.

    Raises:
        ConfigError: not a PNG, or a kind this decoder does not read (16-bit, interlaced).
    """
    if not data.startswith(_SIGNATURE):
        raise ConfigError("not a PNG file")
    off = len(_SIGNATURE)
    header: tuple[int, ...] | None = None
    palette = b""
    idat = bytearray()
    try:
        while off < len(data):
            (length,) = struct.unpack_from(">I", data, off)
            tag = data[off + 4 : off + 8]
            body = data[off + 8 : off + 8 + length]
            if len(body) != length:
                raise ConfigError("PNG: truncated chunk")
            off += 12 + length
            if tag == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif tag == b"PLTE":
                palette = body
            elif tag == b"IDAT":
                idat += body
            elif tag == b"IEND":
                break
    except struct.error:
        raise ConfigError("PNG: truncated") from None
    if header is None:
        raise ConfigError("PNG: no IHDR chunk")
    width, height, depth, colour, _compression, _filter, interlace = header
    if depth != 8 or colour not in _SAMPLES or interlace != 0:
        raise ConfigError(
            f"PNG: only 8-bit non-interlaced images are read (this one: depth {depth}, "
            f"colour type {colour}, interlace {interlace})"
        )
    bpp = _SAMPLES[colour]
    stride = width * bpp
    try:
        raw = zlib.decompress(bytes(idat))
    except zlib.error as exc:
        raise ConfigError(f"PNG: bad image data: {exc}") from None
    if len(raw) < (stride + 1) * height:
        raise ConfigError("PNG: image data shorter than its size")
    pixels = bytearray()
    previous = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, previous, bpp)
        pixels += line
        previous = bytes(line)
    return RgbImage(width, height, _to_rgb(bytes(pixels), colour, palette))


def _to_rgb(pixels: bytes, colour: int, palette: bytes) -> bytes:
    if colour == 2:
        return pixels
    out = bytearray(len(pixels) // _SAMPLES[colour] * 3)
    if colour == 6:
        out[0::3], out[1::3], out[2::3] = pixels[0::4], pixels[1::4], pixels[2::4]
    elif colour in (0, 4):
        grey = pixels[0 :: _SAMPLES[colour]]
        out[0::3] = out[1::3] = out[2::3] = grey
    else:
        if any(3 * p + 3 > len(palette) for p in set(pixels)):
            raise ConfigError("PNG: palette index out of range")
        return b"".join(palette[3 * p : 3 * p + 3] for p in pixels)
    return bytes(out)


@attrs.frozen
class Comparison:
    """How a region compared with its reference."""

    #: Pixels compared (the region's).
    pixels: int
    #: Pixels whose largest channel difference is above the threshold.
    differing: int
    #: The region as seen, greyed, with each differing pixel in red.
    diff: RgbImage

    @property
    def fraction(self) -> float:
        """Differing pixels as a fraction of the region."""
        return self.differing / self.pixels if self.pixels else 0.0


def compare(actual: RgbImage, reference: RgbImage, *, threshold: int = 0) -> Comparison:
    """Compare two images of one size pixel by pixel.

    Raises:
        ConfigError: the sizes differ.
    """
    if (actual.width, actual.height) != (reference.width, reference.height):
        raise ConfigError(
            f"the reference is {reference.width}x{reference.height}, "
            f"the region {actual.width}x{actual.height}"
        )
    a, b = actual.rgb, reference.rgb
    diff = bytearray(a.translate(_THIRD))  # what is seen, at a third of its brightness
    differing = 0
    stride = actual.width * 3
    for row in range(actual.height):
        lo, hi = row * stride, (row + 1) * stride
        if a[lo:hi] == b[lo:hi]:
            continue  # the common case: an equal row costs one comparison
        for i in range(lo, hi, 3):
            if max(abs(a[i] - b[i]), abs(a[i + 1] - b[i + 1]), abs(a[i + 2] - b[i + 2])) > (
                threshold
            ):
                differing += 1
                diff[i : i + 3] = b"\xff\x00\x00"
    seen = RgbImage(actual.width, actual.height, bytes(diff))
    return Comparison(actual.width * actual.height, differing, seen)
