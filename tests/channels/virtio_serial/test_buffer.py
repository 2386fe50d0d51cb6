"""read_until's buffer (sans-I/O) and the StreamReader on top of it."""

from __future__ import annotations

import re

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from virtrio.channels.virtio_serial import (
    IncompleteReadError,
    ReadBuffer,
    ReadLimitError,
    StreamReader,
)
from virtrio.errors import ConfigError, VirtrioTimeoutError


def splits(data: bytes) -> st.SearchStrategy[list[bytes]]:
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda cuts: [
            data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)], strict=True)
        ]
    )


lines = st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\n", b"")), max_size=8)


@given(
    lines.flatmap(lambda ls: st.tuples(st.just(ls), splits(b"".join(line + b"\n" for line in ls))))
)
def test_lines_survive_any_split(case: tuple[list[bytes], list[bytes]]) -> None:
    expected, chunks = case
    buf = ReadBuffer()
    got = []
    for chunk in chunks:
        buf.feed(chunk)
        while (line := buf.take_until(b"\n", include=False)) is not None:
            got.append(line)
    assert got == expected
    assert len(buf) == 0


@given(st.binary(max_size=50), st.binary(min_size=1, max_size=4), st.binary(max_size=50))
def test_multibyte_delimiter_split_anywhere(head: bytes, delim: bytes, tail: bytes) -> None:
    data = head + delim + tail
    first = data.find(delim)
    for cut in range(len(data) + 1):
        buf = ReadBuffer()
        buf.feed(data[:cut])
        got = buf.take_until(delim)
        buf.feed(data[cut:])
        if got is None:
            got = buf.take_until(delim)
        assert got == data[: first + len(delim)]
        assert buf.pending == data[first + len(delim) :]


def test_regex_keeps_the_tail_and_limits() -> None:
    buf = ReadBuffer()
    buf.feed(b"login: root\r\n# ls\r\nbin  # ")
    assert buf.take_until(re.compile(rb"[#$] ")) == b"login: root\r\n# "
    assert buf.take_until(re.compile(rb"[#$] "), include=False) == b"ls\r\nbin  "
    assert buf.pending == b""
    buf.feed(b"x" * 10)
    with pytest.raises(ReadLimitError, match="limit 5"):
        buf.take_until(b"\n", max_size=5)
    assert buf.pending == b"x" * 10  # nothing lost
    buf.feed(b"\n")
    with pytest.raises(ReadLimitError):
        buf.take_until(b"\n", max_size=5)
    assert buf.take_until(b"\n") == b"x" * 10 + b"\n"
    with pytest.raises(ConfigError):
        buf.take_until(b"")
    buf.feed(b"abc")
    with pytest.raises(ConfigError, match="matched empty"):
        buf.take_until(re.compile(rb"z*"))


async def test_stream_reader_deadline_loses_nothing() -> None:
    left, right = trio.testing.memory_stream_pair()
    reader = StreamReader(left, name="echo")
    await right.send_all(b"partial")
    with pytest.raises(VirtrioTimeoutError, match="7 bytes buffered"):
        await reader.read_until(b"\n", timeout=0.05)
    await right.send_all(b" line\nnext")
    assert await reader.read_line(timeout=5) == b"partial line"
    assert reader.buffered == b"next"
    assert await reader.receive_some() == b"next"
    await right.send_all(b"end")
    await right.aclose()
    with pytest.raises(IncompleteReadError) as info:
        await reader.read_until(b"\n", timeout=5)
    assert info.value.partial == b"end"
    assert await reader.receive_some() == b"end"
    assert await reader.receive_some() == b""
    await reader.send_all(b"")
    await reader.aclose()
