"""Recorded output: marks and expects that never miss output and never match before the mark."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import trio
import trio.testing
from hypothesis import given, strategies as st

from virtrio.channels import open_listeners
from virtrio.errors import VirtrioTimeoutError
from virtrio.nurseries import Backoff, Mark, MarkExpiredError, Recorder, open_vm
from virtrio.nurseries._recorder import compile_pattern


@given(
    before=st.binary(max_size=64),
    after=st.binary(max_size=64),
    needle=st.binary(min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_a_match_is_found_however_output_is_split_and_never_before_the_mark(
    before: bytes, after: bytes, needle: bytes, cuts: list[int]
) -> None:
    recorder = Recorder(4096)
    recorder.feed(before)
    mark = recorder.mark()
    stream = after + needle
    pattern = compile_pattern(needle)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    found = None
    for start, end in itertools.pairwise(points):
        recorder.feed(stream[start:end])
        found = recorder.find(pattern, mark)
        if found is not None:
            break
    assert found is not None
    assert found.start >= mark.offset
    # the earliest occurrence at or after the mark, in the whole stream
    assert found.start == len(before) + stream.find(needle)
    assert found.data == needle


def test_a_regex_spans_reads_and_a_str_regex_is_encoded() -> None:
    recorder = Recorder()
    recorder.feed(b"login: ")
    mark = recorder.mark()
    pattern = compile_pattern(re.compile(r"Linux (\S+) x86"))
    for chunk in (b"Lin", b"ux 6.1.0-", b"amd64 x8", b"6_64\n"):
        recorder.feed(chunk)
    found = recorder.find(pattern, mark)
    assert found is not None
    assert found.groups == (b"6.1.0-amd64",)
    assert found.mark.offset == found.end
    assert recorder.find(compile_pattern("login"), mark) is None  # before the mark


def test_a_mark_that_fell_out_of_the_window_is_a_clear_error() -> None:
    recorder = Recorder(16, name="vm/console")
    mark = recorder.mark()
    recorder.feed(b"x" * 40)
    with pytest.raises(MarkExpiredError, match=r"vm/console: the mark at byte 0 fell out .*24-40"):
        recorder.find(compile_pattern("x"), mark)
    assert recorder.data() == b"x" * 16
    assert recorder.start == 24


async def test_a_line_channel_records_across_reconnects(tmp_path: Path) -> None:
    """A console socket that closes and comes back: offsets continue, a mark taken before the
    drop finds output sent after the reconnect, and output sent before expect() began counts."""
    path = tmp_path / "console.sock"
    listeners = await open_listeners(f"unix:{path}")
    spec = {"kind": "serial-console", "address": f"unix:{path}", "retention": 4096}
    backoff = lambda: Backoff(initial=0.01, maximum=0.05, jitter=0)  # noqa: E731
    async with open_vm("t", channels={"console": spec}, backoff=backoff, call_timeout=5) as vm:
        console = vm.line("console")
        first = await listeners[0].accept()
        mark = console.mark()
        await first.send_all(b"boot: ok\n")
        await console.expect("ok", after=mark, timeout=5)  # sent before this wait started too
        second_mark = console.mark()
        await first.aclose()
        second = await listeners[0].accept()
        await second.send_all(b"again\n")
        found = await console.expect(b"again", after=second_mark, timeout=5)
        assert found.start == len(b"boot: ok\n")
        with pytest.raises(VirtrioTimeoutError, match=r"'boot' not seen after byte 9"):
            await console.expect("boot", after=second_mark, timeout=0.2)
        await console.send("echo\n")
        assert await second.receive_some() == b"echo\n"
        assert console.output() == b"boot: ok\nagain\n"
        await second.aclose()
    for listener in listeners:
        await listener.aclose()


async def test_expect_defaults_to_output_from_now(tmp_path: Path) -> None:
    path = tmp_path / "port.sock"
    listeners = await open_listeners(f"unix:{path}")
    spec = {"kind": "virtio-serial", "address": f"unix:{path}"}
    async with open_vm("t", channels={"p": spec}, call_timeout=5) as vm:
        port = vm.line("p")
        peer = await listeners[0].accept()
        await peer.send_all(b"old\n")
        await port.expect("old", after=Mark(0), timeout=5)
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.testing.wait_all_tasks_blocked()
                await peer.send_all(b"new old\n")

            nursery.start_soon(later)
            found = await port.expect("old", timeout=5)
        assert found.start == len(b"old\nnew ")
        await peer.aclose()
    for listener in listeners:
        await listener.aclose()
