"""Types of the C module built from ``_speedups.c`` (see :mod:`._loops`)."""

from collections.abc import Callable

def encode_data_packets(
    view: memoryview,
    max_payload: int,
    seq: int,
    crc32: Callable[[bytes | memoryview], int],
    parts: list[bytes | memoryview],
    /,
) -> None: ...
def parse_pieces(
    data: bytes,
    view: memoryview,
    offset: int,
    count: int,
    view_min: int,
    crc32: Callable[[bytes | memoryview], int],
    pieces: list[bytes | memoryview],
    /,
) -> tuple[int, int, int]: ...
def use_zlib_ng(path: str, /) -> bool: ...
