"""Rectangle copies between row-major pixel buffers, in C loops rather than a Python loop per row.

A Spice update is rarely whole rows of the surface: QEMU's simple display sends a full-screen
change as one DRAW_COPY per 32-pixel column, each 32 x 768 at 1024 x 768, so a per-row loop runs
24,576 times a frame. :func:`copy_rect` does one slice assignment per rectangle instead.

How: a 1-D memoryview assignment with a step copies item by item in C, and ctypes can give a
buffer items of any size. Viewed as an array of ``row_bytes``-sized items (a ctypes structure
of that size), a rectangle whose row length divides both strides is every ``k``-th item, so
``dst_items[i::k] = src_items[j::m]`` is the whole copy (bottom-up sources step backwards).
ctypes is only the view's item type here: no foreign call is made. Rectangles whose strides
are not multiples of the row length (rare: QEMU's blocks divide the surface width) take one
slice assignment per row.
"""

from __future__ import annotations

import ctypes
import functools

__all__ = ["copy_rect", "expand_bgr"]

_Buffer = bytes | bytearray | memoryview


@functools.lru_cache(maxsize=32)
def _row_type(row_bytes: int) -> type[ctypes.Structure]:
    """A ctypes structure ``row_bytes`` long: the item type of a row view."""
    fields = [("row", ctypes.c_char * row_bytes)]
    return type(f"Row{row_bytes}", (ctypes.Structure,), {"_fields_": fields, "_pack_": 1})


@functools.lru_cache(maxsize=64)
def _array_type(row_bytes: int, count: int) -> type[ctypes.Array[ctypes.Structure]]:
    # held here: ctypes itself caches array types only weakly, and building one costs ~20 us
    return _row_type(row_bytes) * count


def _items(buffer: _Buffer, offset: int, row_bytes: int) -> tuple[memoryview, int]:
    """``buffer`` as a 1-D view of ``row_bytes`` items, and the index of the one at ``offset``.

    The view starts at ``offset % row_bytes`` so that the item count (and so the cached array
    type) takes at most two values per buffer length. Writable buffers are viewed in place;
    a read-only one is copied once (ctypes views only writable memory).
    """
    start = offset % row_bytes
    count = (len(buffer) - start) // row_bytes
    kind = _array_type(row_bytes, count)
    if isinstance(buffer, bytearray) or (isinstance(buffer, memoryview) and not buffer.readonly):
        array = kind.from_buffer(buffer, start)
    else:
        array = kind.from_buffer_copy(buffer, start)
    return memoryview(array), offset // row_bytes


def copy_rect(
    dst: bytearray,
    dst_offset: int,
    dst_stride: int,
    src: _Buffer,
    src_offset: int,
    src_stride: int,
    row_bytes: int,
    rows: int,
) -> None:
    """Copy ``rows`` rows of ``row_bytes`` bytes from ``src`` into ``dst``.

    Row ``i`` is read at ``src_offset + i * src_stride`` (a negative stride walks a bottom-up
    bitmap upwards) and written at ``dst_offset + i * dst_stride`` (``dst_stride`` > 0). The
    caller checks that every row lies inside both buffers.
    """
    if rows <= 0 or row_bytes <= 0:
        return
    if dst_stride == row_bytes and src_stride == row_bytes:
        size = row_bytes * rows  # both sides contiguous
        dst[dst_offset : dst_offset + size] = memoryview(src)[src_offset : src_offset + size]
        return
    if rows == 1 or dst_stride % row_bytes or src_stride % row_bytes:
        view = memoryview(src)
        for _ in range(rows):
            dst[dst_offset : dst_offset + row_bytes] = view[src_offset : src_offset + row_bytes]
            dst_offset += dst_stride
            src_offset += src_stride
        return
    dst_step, src_step = dst_stride // row_bytes, src_stride // row_bytes
    dst_items, d = _items(dst, dst_offset, row_bytes)
    src_items, s = _items(src, src_offset, row_bytes)
    with dst_items, src_items:
        last = s + (rows - 1) * src_step
        # a slice's stop must not be -1 when walking backwards to item 0: None means "past it"
        stop = last + (1 if src_step > 0 else -1)
        source = src_items[s : None if stop < 0 else stop : src_step]
        dst_items[d : d + (rows - 1) * dst_step + 1 : dst_step] = source


def expand_bgr(src: _Buffer, offset: int, pixels: int) -> bytearray:
    """``pixels`` 24-bit BGR pixels from ``src`` at ``offset`` as BGRX (X = 0), in one pass."""
    bgr = bytes(memoryview(src)[offset : offset + pixels * 3])  # bytes: fast strided slices
    out = bytearray(pixels * 4)
    out[0::4] = bgr[0::3]
    out[1::4] = bgr[1::3]
    out[2::4] = bgr[2::3]
    return out
