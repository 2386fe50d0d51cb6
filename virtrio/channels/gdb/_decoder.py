"""Decoding a ``g`` reply: one function per register layout, compiled once.

The ``g`` packet holds the registers back to back in regnum order, each in the target's byte
order. For one layout (the registers a reply of one length covers whole),
:func:`compile_decoder` builds a single struct for the whole packet -- a register of 1, 2, 4
or 8 bytes is one field; one up to 16 bytes (x87's 10, SSE's 16) is 8-byte and smaller fields
put together with shifts; a wider one is bytes made an int of -- and a function whose body is
one dict display, the way :mod:`attrs` and :func:`collections.namedtuple` generate theirs::

    def decode(data, unpack=..., from_bytes=int.from_bytes):
        v = unpack(data)
        return {'rax': v[0], ..., 'st0': v[33] | v[34] << 64, ..., 'mxcsr': v[89]}

A reply then costs one struct call and the display, its keys in register order (x86_64's 66
registers: ~4 µs, a fifth less than filling a copied dict from two struct calls; most of it is
making the dict). Register names, which come from the stub, reach the source only as the
``repr`` of a str: a literal.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Literal, Protocol

__all__ = ["Decoder", "compile_decoder"]

Decoder = Callable[[bytes], dict[str, int]]

_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
#: Registers up to this many bytes are put together from struct fields; wider ones (AVX-512,
#: SVE) are read as bytes, where one int.from_bytes beats many shifts.
_SPLIT_UP_TO = 16


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def size(self) -> int: ...


def _pieces(size: int) -> list[int]:
    """The struct field sizes a register of ``size`` bytes is read as, in memory order."""
    pieces = []
    left = size
    while left:
        piece = next(p for p in (8, 4, 2, 1) if p <= left)
        pieces.append(piece)
        left -= piece
    return pieces


def compile_decoder(registers: Sequence[_Named], byteorder: Literal["little", "big"]) -> Decoder:
    """A function from the bytes of a ``g`` reply (its hex decoded; at least as long as
    ``registers``, which lie back to back from offset 0) to the registers' values by name, in
    their order."""
    fields = ["<" if byteorder == "little" else ">"]
    values: list[str] = []
    index = 0
    for reg in registers:
        size = reg.size
        if size in _CODES:
            fields.append(_CODES[size])
            values.append(f"v[{index}]")
            index += 1
        elif size <= _SPLIT_UP_TO:
            terms = []
            offset = 0
            for piece in _pieces(size):
                fields.append(_CODES[piece])
                # the piece's place in the value: from the low end for little-endian
                shift = 8 * (offset if byteorder == "little" else size - offset - piece)
                terms.append(f"v[{index}] << {shift}" if shift else f"v[{index}]")
                index += 1
                offset += piece
            values.append(" | ".join(terms))
        else:
            fields.append(f"{size}s")
            values.append(f"from_bytes(v[{index}], {byteorder!r})")
            index += 1
    # the names as literals: repr of a str (whatever the stub put in it) reads back as that str
    names = [repr(str(reg.name)) for reg in registers]
    items = ", ".join(f"{name}: {value}" for name, value in zip(names, values, strict=True))
    source = (
        "def decode(data, unpack=unpack, from_bytes=int.from_bytes):\n"
        "    v = unpack(data)\n"
        f"    return {{{items}}}\n"
    )
    namespace: dict[str, object] = {"unpack": struct.Struct("".join(fields)).unpack_from}
    exec(compile(source, "<g decoder>", "exec"), namespace)
    decode = namespace["decode"]
    assert callable(decode)
    return decode
