"""Sans-I/O display state: surfaces (BGRX framebuffers) updated from display messages; PNG out.

Handles SURFACE_CREATE/DESTROY, DRAW_COPY (raw BITMAP 32/24-bit, OP_PUT), DRAW_FILL (solid),
COPY_BITS, MARK and RESET — what QEMU's simple display sends with compression off.

:meth:`DisplayState.place` is a :data:`~virtrio.channels.spice._framing.Placer`: a DRAW_COPY
of a top-down bitmap covering the whole surface in its layout (what a QXL guest's full-screen
update is) has its pixels read from the socket straight into the surface's second buffer, and
``handle(..., placed=True)`` then swaps the two: no copy in user space, and never a half-drawn
frame in ``Surface.pixels``.
"""

from __future__ import annotations

import struct
import zlib

import attrs

from virtrio.channels.spice._blit import copy_rect, expand_bgr
from virtrio.channels.spice._errors import SpiceProtocolError

__all__ = ["DisplayState", "Rect", "Surface", "encode_png"]

MSG_MARK = 102
MSG_RESET = 103
MSG_COPY_BITS = 104
MSG_DRAW_FILL = 302
MSG_DRAW_COPY = 304
MSG_SURFACE_CREATE = 314
MSG_SURFACE_DESTROY = 315

MSGC_INIT = 101
MSGC_PREFERRED_COMPRESSION = 103
COMPRESSION_OFF = 1
CAP_MONITORS_CONFIG = 1
CAP_PREF_COMPRESSION = 6
CAP_MULTI_CODEC = 8

_IMAGE_BITMAP = 0
_BITMAP_24 = 7
_BITMAP_32 = 8
_BITMAP_RGBA = 9
_TOP_DOWN = 4
_PAL_FROM_CACHE = 2


@attrs.frozen
class Rect:
    """A rectangle, right/bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self.bottom - self.top


@attrs.define
class Surface:
    """One surface: ``width`` x ``height`` pixels, BGRX, 4 bytes each, rows top-down."""

    width: int
    height: int
    #: The current frame. A whole-surface update read in place (:meth:`DisplayState.place`)
    #: replaces this bytearray by another, so read it anew rather than keep it.
    pixels: bytearray
    #: the frame a whole-surface update is being read into, swapped with ``pixels`` when whole
    back: bytearray | None = attrs.field(default=None, repr=False, eq=False)

    @classmethod
    def blank(cls, width: int, height: int) -> Surface:
        """A black surface."""
        return cls(width, height, bytearray(width * height * 4))

    def clip(self, rect: Rect) -> Rect:
        """``rect`` clipped to the surface."""
        return Rect(
            max(0, rect.left),
            max(0, rect.top),
            min(self.width, rect.right),
            min(self.height, rect.bottom),
        )

    def region(self, rect: Rect) -> bytes:
        """The BGRX bytes of ``rect`` (clipped), row after row."""
        r = self.clip(rect)
        if r.width <= 0 or r.height <= 0:
            return b""
        stride, row = self.width * 4, r.width * 4
        out = bytearray(row * r.height)
        copy_rect(out, 0, row, self.pixels, r.top * stride + r.left * 4, stride, row, r.height)
        return bytes(out)

    def to_png(self) -> bytes:
        """The surface as an RGB PNG."""
        return encode_png(self.width, self.height, self.pixels)


def encode_png(width: int, height: int, bgrx: bytes | bytearray) -> bytes:
    """Encode BGRX pixels as an 8-bit RGB PNG (zlib only, no imaging library)."""
    stride = width * 4
    rows = bytearray()
    for y in range(height):
        row = bgrx[y * stride : (y + 1) * stride]
        rgb = bytearray(width * 3)
        rgb[0::3] = row[2::4]
        rgb[1::3] = row[1::4]
        rgb[2::3] = row[0::4]
        rows += b"\0" + rgb

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(rows), 6))
        + chunk(b"IEND", b"")
    )


def _rect(body: bytes | bytearray | memoryview, off: int) -> Rect:
    top, left, bottom, right = struct.unpack_from("<iiii", body, off)
    return Rect(left, top, right, bottom)


def _base(body: bytes | bytearray | memoryview) -> tuple[int, Rect, list[Rect] | None, int]:
    """DisplayBase: surface id, box, clip rects (None = no clip), offset after it."""
    surface_id = struct.unpack_from("<I", body)[0]
    box = _rect(body, 4)
    clip_type = body[20]
    off = 21
    clips: list[Rect] | None = None
    if clip_type == 1:
        (n,) = struct.unpack_from("<I", body, off)
        off += 4
        if off + 16 * n > len(body):
            raise SpiceProtocolError("clip rects run past the message")
        clips = [_rect(body, off + 16 * i) for i in range(n)]
        off += 16 * n
    elif clip_type != 0:
        raise SpiceProtocolError(f"unknown clip type {clip_type}")
    return surface_id, box, clips, off


def _intersect(a: Rect, b: Rect) -> Rect:
    return Rect(
        max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom)
    )


class DisplayState:
    """Surfaces of one display channel, updated by :meth:`handle`."""

    def __init__(self) -> None:
        self.surfaces: dict[int, Surface] = {}
        self.primary_id: int | None = None
        #: True after MARK: the primary has been fully drawn once.
        self.marked = False
        #: bumped on every change to any surface; waiters compare it
        self.generation = 0

    @property
    def primary(self) -> Surface | None:
        """The primary surface, if any."""
        return None if self.primary_id is None else self.surfaces.get(self.primary_id)

    def handle(self, mtype: int, body: bytes | bytearray, *, placed: bool = False) -> Rect | None:
        """Apply one display message; return the changed rect on the primary (or None).

        ``placed``: the message's pixels are already in the framebuffer (see :meth:`place`),
        ``body`` is the part before them.
        """
        try:
            if placed:
                sid, box, _clips, _off = _base(body)
                surface = self.surfaces[sid]
                assert surface.back is not None
                surface.pixels, surface.back = surface.back, surface.pixels
                return self._changed(sid, box)
            return self._handle(mtype, body)
        except (struct.error, IndexError):
            raise SpiceProtocolError(f"display message {mtype} is truncated") from None

    def place(self, mtype: int, head: memoryview, size: int) -> tuple[int, memoryview] | None:
        """Where the pixels of a DRAW_COPY of ``size`` bytes go, if they can be read straight
        into a surface: ``(offset of the pixels in the body, the surface's second buffer)``.

        Only for a whole-surface update in the surface's own layout: no clip rects, no scaling,
        a top-down 32-bit bitmap the size of the surface with its stride, the box the whole
        surface, and the pixels ending the body. Anything else (or a ``head`` too short to
        tell) returns None and is read and drawn as usual.
        """
        if mtype != MSG_DRAW_COPY:
            return None
        try:
            sid, box, clips, off = _base(head)
            (image_ptr,) = struct.unpack_from("<I", head, off)
            src = _rect(head, off + 4)
            if head[image_ptr + 8] != _IMAGE_BITMAP:
                return None
            b = image_ptr + 18
            fmt, flags, width, height, stride = struct.unpack_from("<BBIII", head, b)
            b += 14 + (8 if flags & _PAL_FROM_CACHE else 4)
        except (struct.error, IndexError, SpiceProtocolError):
            return None  # too short to tell (or garbage: then handle() says what is wrong)
        surface = self.surfaces.get(sid)
        if (
            surface is None
            or clips is not None
            or fmt not in (_BITMAP_32, _BITMAP_RGBA)
            or not flags & _TOP_DOWN
            or box != Rect(0, 0, surface.width, surface.height)
            or src != box
            or (width, height, stride) != (surface.width, surface.height, surface.width * 4)
            or b + len(surface.pixels) != size
        ):
            return None
        if surface.back is None or len(surface.back) != len(surface.pixels):
            surface.back = bytearray(len(surface.pixels))
        return b, memoryview(surface.back)

    def _handle(self, mtype: int, body: bytes | bytearray) -> Rect | None:
        if mtype == MSG_SURFACE_CREATE:
            sid, width, height, _fmt, flags = struct.unpack_from("<IIIII", body)
            if width * height > 16384 * 16384:
                raise SpiceProtocolError(f"surface {width}x{height} too large")
            self.surfaces[sid] = Surface.blank(width, height)
            if flags & 1:
                self.primary_id = sid
            self.generation += 1
            return Rect(0, 0, width, height) if flags & 1 else None
        if mtype == MSG_SURFACE_DESTROY:
            (sid,) = struct.unpack_from("<I", body)
            self.surfaces.pop(sid, None)
            if sid == self.primary_id:
                self.primary_id = None
                self.marked = False
            self.generation += 1
            return None
        if mtype == MSG_MARK:
            self.marked = True
            self.generation += 1
            return None
        if mtype == MSG_RESET:
            if (p := self.primary) is not None:
                p.pixels[:] = bytes(len(p.pixels))
            self.marked = False
            self.generation += 1
            return None
        if mtype == MSG_DRAW_COPY:
            return self._draw_copy(body)
        if mtype == MSG_DRAW_FILL:
            return self._draw_fill(body)
        if mtype == MSG_COPY_BITS:
            return self._copy_bits(body)
        return None

    def _target(self, sid: int, box: Rect, clips: list[Rect] | None) -> tuple[Surface, list[Rect]]:
        surface = self.surfaces.get(sid)
        if surface is None:
            raise SpiceProtocolError(f"draw on unknown surface {sid}")
        box = surface.clip(box)
        areas = [box] if clips is None else [_intersect(box, surface.clip(c)) for c in clips]
        return surface, [a for a in areas if a.width > 0 and a.height > 0]

    def _changed(self, sid: int, box: Rect) -> Rect | None:
        self.generation += 1
        return box if sid == self.primary_id else None

    def _draw_fill(self, body: bytes | bytearray) -> Rect | None:
        sid, box, clips, off = _base(body)
        brush_type = body[off]
        if brush_type != 1:
            return None  # pattern brushes are not drawn
        (color,) = struct.unpack_from("<I", body, off + 1)
        surface, areas = self._target(sid, box, clips)
        pixel = struct.pack("<I", color | 0xFF000000)
        stride = surface.width * 4
        for a in areas:
            line = pixel * a.width
            for y in range(a.top, a.bottom):
                surface.pixels[y * stride + a.left * 4 : y * stride + a.right * 4] = line
        return self._changed(sid, box)

    def _copy_bits(self, body: bytes | bytearray) -> Rect | None:
        sid, box, clips, off = _base(body)
        src_x, src_y = struct.unpack_from("<ii", body, off)
        surface, areas = self._target(sid, box, clips)
        stride = surface.width * 4
        snapshot = bytes(surface.pixels)
        for a in areas:
            for y in range(a.top, a.bottom):
                sy = src_y + (y - box.top)
                sx = src_x + (a.left - box.left)
                if not (0 <= sy < surface.height and sx >= 0 and sx + a.width <= surface.width):
                    raise SpiceProtocolError("COPY_BITS source outside the surface")
                surface.pixels[y * stride + a.left * 4 : y * stride + a.right * 4] = snapshot[
                    sy * stride + sx * 4 : sy * stride + (sx + a.width) * 4
                ]
        return self._changed(sid, box)

    def _draw_copy(self, body: bytes | bytearray) -> Rect | None:
        sid, box, clips, off = _base(body)
        (image_ptr,) = struct.unpack_from("<I", body, off)
        src = _rect(body, off + 4)
        image_type = body[image_ptr + 8]
        if image_type != _IMAGE_BITMAP:
            raise SpiceProtocolError(
                f"compressed image type {image_type} not supported (ask for compression off)"
            )
        b = image_ptr + 18
        fmt, flags, width, height, stride = struct.unpack_from("<BBIII", body, b)
        b += 14
        b += 8 if flags & _PAL_FROM_CACHE else 4
        bpp = {_BITMAP_32: 4, _BITMAP_RGBA: 4, _BITMAP_24: 3}.get(fmt)
        if bpp is None:
            raise SpiceProtocolError(f"bitmap format {fmt} not supported")
        if stride < width * bpp or b + stride * height > len(body):
            raise SpiceProtocolError("bitmap data runs past the message")
        surface, areas = self._target(sid, box, clips)
        if src.width != box.width or src.height != box.height:
            raise SpiceProtocolError("scaled DRAW_COPY not supported")
        sstride = surface.width * 4
        top_down = bool(flags & _TOP_DOWN)
        for a in areas:
            first = src.top + (a.top - box.top)
            last = first + a.height - 1
            col = src.left + (a.left - box.left)
            if not (first >= 0 and last < height and col >= 0 and col + a.width <= width):
                raise SpiceProtocolError("DRAW_COPY source area outside the bitmap")
            # bitmap row of the area's first destination row, and the step to the next one
            row = first if top_down else height - 1 - first
            source = body
            start, step = b + row * stride + col * bpp, stride if top_down else -stride
            if bpp == 3:
                # BGR to BGRX for the rows the area covers, then copy that like a 32-bit bitmap
                low = first if top_down else height - 1 - last
                if stride == width * 3:
                    source = expand_bgr(body, b + low * stride, a.height * width)
                else:  # padded rows: one at a time
                    source = bytearray()
                    for r in range(low, low + a.height):
                        source += expand_bgr(body, b + r * stride, width)
                step = width * 4 if top_down else -width * 4
                start = (row - low) * width * 4 + col * 4
            copy_rect(
                surface.pixels,
                a.top * sstride + a.left * 4,
                sstride,
                source,
                start,
                step,
                a.width * 4,
                a.height,
            )
        return self._changed(sid, box)
