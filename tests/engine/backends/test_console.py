"""The console buffer keeps a bounded history in memory (its last ``history_limit`` bytes)
while the log file and the listeners get every byte."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import trio
from hypothesis import given, strategies as st

from virtrio.engine.backends import ConsoleBuffer


@contextlib.contextmanager
def _closing(console: ConsoleBuffer) -> Iterator[None]:
    try:
        yield
    finally:
        console.close()


@given(
    chunks=st.lists(st.binary(max_size=300), max_size=40),
    limit=st.integers(min_value=1, max_value=1000),
)
def test_the_history_is_the_tail_of_all_output_within_the_limit(
    chunks: list[bytes], limit: int
) -> None:
    console = ConsoleBuffer(history_limit=limit)
    for chunk in chunks:
        console.feed(chunk)
        assert len(console.output()) <= limit
    everything = b"".join(chunks)
    kept = everything[-limit:] if everything else b""
    assert console.output() == kept
    assert console.dropped + len(console.output()) == len(everything)


async def test_the_log_and_listeners_get_every_byte_and_waits_use_whole_offsets(
    tmp_path: Path,
) -> None:
    console = ConsoleBuffer(tmp_path / "console.log", history_limit=12)
    with console.subscribe() as sub, _closing(console):
        for n in range(10):
            console.feed(f"line {n:02d}\n".encode())
        console.feed(b"END\n")
        # "line 00" is gone from memory: a wait from offset 0 sees only what is kept
        assert await console.wait_for(b"END", timeout=5) == b"line 09\nEND\n"
        assert b"line 00" not in console.output()
        assert console.dropped == 80 + 4 - 12
        # an offset into all output (past what was dropped) still finds later text
        assert b"END" in await console.wait_for(b"END", timeout=5, start=80)
        received = b""
        with trio.fail_after(5):
            while b"END" not in received:
                received += await sub.receive()
    everything = b"".join(f"line {n:02d}\n".encode() for n in range(10)) + b"END\n"
    assert received == everything
    assert (tmp_path / "console.log").read_bytes() == everything
    console.history_limit = 4  # lowering the limit trims at once
    assert console.output() == b"END\n"
