"""glibc's heap after ``serve_reads_from_heap`` (``virtrio.channels._heap``): a burst of large
buffers, freed, leaves the heap as it was, so the next burst faults in no page. Each case runs
in a fresh interpreter (the thresholds are per process, and once raised they stay)."""

from __future__ import annotations

import subprocess
import sys

BURST = r"""
import resource, sys
from virtrio.channels._heap import serve_reads_from_heap

if sys.argv[1] == "raised":
    serve_reads_from_heap(512 * 1024)


def burst() -> None:
    # 48 buffers of 256 KiB (12 MiB), each written through, then all freed at once: what a
    # busy session's reads and frame bodies do
    blocks = [bytearray(256 * 1024) for _ in range(48)]
    del blocks


burst()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
burst()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

PAGES = 48 * 256 * 1024 // 4096


def faults_in_second_burst(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", BURST, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def test_a_second_burst_faults_in_no_page_once_the_heap_is_kept() -> None:
    assert faults_in_second_burst("raised") < PAGES // 20


def test_without_it_glibc_hands_the_burst_back_and_faults_it_in_again() -> None:
    """The control: glibc's own thresholds trim the freed burst, so the test above can fail."""
    assert faults_in_second_burst("default") > PAGES // 2
