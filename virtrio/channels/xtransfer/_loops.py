"""The two per-packet loops of xtransport: framing a message's MessageData packets
(:func:`encode_data_packets`) and taking them apart (:func:`parse_pieces`).

Each exists twice: in C (``_speedups.c``, built when virtrio is installed and a C compiler is
there) and here in Python (:func:`encode_data_packets_py`, :func:`parse_pieces_py`), the
reference the tests hold the C code to and the fallback without it. The C loops take a 4 KiB
frame's packet in about half the CPU (the interpreter's per-packet work is what they remove;
the CRC stays zlib-ng's, called directly): with both ends of a connection in one process,
64 KiB messages in 4 KiB frames went at about 2,000 MB/s instead of 1,570.
``VIRTRIO_XTRANSPORT_PURE=1`` in the environment makes a process use the Python loops.

Neither loop raises for bad input: :func:`parse_pieces` stops where the general parser must
look (and name the fault).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

from ._wire import DATA_HEADER, DATA_PREFIX, HEADER_SIZE, crc32

__all__ = [
    "COMPILED",
    "encode_data_packets",
    "encode_data_packets_py",
    "parse_pieces",
    "parse_pieces_py",
]

_U32 = 0xFFFFFFFF

#: A CRC-32 function (zlib's or zlib-ng's ``crc32``).
Crc32 = Callable[[bytes | memoryview], int]
#: The buffers of a gathering write: headers, then payload views.
Parts = list[bytes | memoryview]


def encode_data_packets_py(
    view: memoryview, max_payload: int, seq: int, crc32: Crc32, parts: Parts
) -> None:
    """Append to ``parts`` the header and then the payload (a view of ``view``) of each
    MessageData packet carrying ``view`` in pieces of ``max_payload`` bytes, numbered from
    ``seq`` on modulo 2**32."""
    append, data_header, prefix = parts.append, DATA_HEADER.pack, DATA_PREFIX
    for start in range(0, len(view), max_payload):
        piece = view[start : start + max_payload]
        append(data_header(prefix, seq & _U32, len(piece), crc32(piece)))
        append(piece)
        seq += 1


def parse_pieces_py(
    data: bytes,
    view: memoryview,
    offset: int,
    count: int,
    view_min: int,
    crc32: Crc32,
    pieces: Parts,
) -> tuple[int, int, int]:
    """Take up to ``count`` whole MessageData packets of ``data`` (``view`` a memoryview of
    it) from ``offset`` on, appending each payload to ``pieces``: a view of ``data``, or bytes
    when shorter than ``view_min``. Returns where it stopped, how many packets it took and
    their payload bytes.

    It stops early before a header that is not a MessageData one, a packet that the end of
    ``data`` cuts, or a payload whose CRC does not match its header's."""
    unpack, prefix = DATA_HEADER.unpack_from, DATA_PREFIX
    size, last = len(data), len(data) - HEADER_SIZE
    append, taken, received = pieces.append, 0, 0
    while taken < count and offset <= last:
        start_of_header, _seq, length, crc = unpack(data, offset)
        start = offset + HEADER_SIZE
        end = start + length
        if start_of_header != prefix or end > size:
            break
        payload = view[start:end]
        if crc32(payload) != crc:
            break
        append(payload if length >= view_min else bytes(payload))
        taken += 1
        received += length
        offset = end
    return offset, taken, received


def _compiled() -> ModuleType | None:
    if os.environ.get("VIRTRIO_XTRANSPORT_PURE"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        pass  # the C loops call ``crc32`` (zlib's) through Python
    else:
        if crc32 is zlib_ng.crc32 and zlib_ng.__file__:
            _speedups.use_zlib_ng(zlib_ng.__file__)
    return _speedups


_speedups = _compiled()
#: True when the C loops are in use.
COMPILED = _speedups is not None
#: :func:`encode_data_packets_py`, or the C loop that does the same.
encode_data_packets: Callable[[memoryview, int, int, Crc32, Parts], None] = (
    _speedups.encode_data_packets if _speedups is not None else encode_data_packets_py
)
#: :func:`parse_pieces_py`, or the C loop that does the same.
parse_pieces: Callable[[bytes, memoryview, int, int, int, Crc32, Parts], tuple[int, int, int]] = (
    _speedups.parse_pieces if _speedups is not None else parse_pieces_py
)
