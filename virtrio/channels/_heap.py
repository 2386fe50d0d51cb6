"""Large buffers from glibc's heap, and a heap that is not handed back between bursts: the
mmap and trim thresholds raised once per process.

A channel that reads its socket directly asks for a large buffer per read (256-512 KiB) and
shrinks it to what came; a yamux session holds a 64 KiB body per frame until its stream's
reader takes it. Two glibc defaults make such traffic fault pages in over and over:

- Above the mmap threshold (128 KiB to start) each allocation is an mmap, a page fault per
  4 KiB written and an munmap: 30-34 µs against 5.5 µs for a 64 KiB read into a 512 KiB
  buffer, measured on a socketpair.
- Whenever more than the trim threshold lies free at the top of the heap, ``free`` hands it
  back to the kernel (``brk``), and the next burst faults it in again, zeroed page by page. At
  the 2 MiB that a raised 1 MiB mmap threshold gives, a 64-stream yamux receiver made 31-137
  ``brk`` calls and 2,200-29,000 minor faults per 256 MiB; those runs went at 1,700-2,500 MB/s
  where runs without them reached 3,200-3,500 (the fault counts from strace and /proc).

glibc raises both thresholds itself the first time it frees a mapped block larger than the
mmap threshold (mallopt(3), "dynamic mmap threshold"): the mmap threshold becomes that block's
size and the trim threshold twice it, for blocks of up to 32 MiB (a larger one, or 32 MiB with
its header, changes nothing). Freeing one untouched 31 MiB block at the start does it at once:
allocations up to 31 MiB come from the heap, and up to 62 MiB may lie free at its top before
any is handed back. A 16 MiB block (a 32 MiB trim threshold) was not enough: the 64-stream
receiver's heap spans about 53 MiB at its peak (the yamux windows let that much wait unread),
and it was still trimmed by 33-48 MiB a few times per ten runs. With 31 MiB it faults no page
after its first runs (0-10 minor faults per run, no ``brk``). The cost: glibc keeps up to that
much freed memory instead of returning it (a process keeps its peak). Other C libraries ignore
the trick.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HEAP_BLOCK", "serve_reads_from_heap"]

#: The mapped block freed once: glibc's mmap threshold becomes this, its trim threshold twice
#: it (just under the 32 MiB beyond which glibc adjusts neither).
HEAP_BLOCK: Final = 31 * 1024 * 1024

_kept = False


def serve_reads_from_heap(read_size: int) -> None:
    """Make reads of up to ``read_size`` bytes, and what a burst of them leaves free, stay on
    the heap (see the module). Once per process: the one block sets both thresholds for every
    size up to :data:`HEAP_BLOCK`; a larger read cannot come from the heap (glibc maps it)."""
    global _kept
    if not _kept and read_size <= HEAP_BLOCK:
        _kept = True
        # bytes(n) is calloc'ed: a fresh mapping, never written, costs no page fault
        block = bytes(HEAP_BLOCK)
        del block
