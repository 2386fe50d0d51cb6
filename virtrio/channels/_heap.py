"""Large read buffers from the heap: glibc's mmap threshold raised once per process.

A channel that reads its socket directly asks for a large buffer per read (256-512 KiB) and
shrinks it to what came. Above glibc's mmap threshold (128 KiB to start) each such
allocation is an mmap, a page fault per 4 KiB written and an munmap: 30-34 µs against 5.5 µs
for a 64 KiB read into a 512 KiB buffer, measured on a socketpair. glibc raises the threshold
itself, up to 32 MiB, the first time it frees a mapped block larger than it (mallopt(3),
"dynamic mmap threshold"), which reads that never fill their buffer never do. Freeing one
block of twice the read size at the start does it at once. Other C libraries ignore it; the
cost is that glibc may keep up to that much freed memory instead of returning it.
"""

from __future__ import annotations

__all__ = ["serve_reads_from_heap"]

_raised_to = 0


def serve_reads_from_heap(read_size: int) -> None:
    """Make reads of up to ``read_size`` bytes come from the heap (once per size)."""
    global _raised_to
    if read_size > _raised_to:
        _raised_to = read_size
        block = bytearray(read_size * 2)
        del block
