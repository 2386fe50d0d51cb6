"""The execution-log parser (hypothesis: any split of the log, garbage between lines) and the
lcov writer on a synthetic program."""

from __future__ import annotations

import itertools

from hypothesis import given, strategies as st

from virtrio.engine.backends import DebugInfo, ExecLogParser, FunctionInfo, lcov
from virtrio.engine.backends._coverage import _Row

LOG = (
    b"----------------\n"
    b"IN: main\n"
    b"0x00000100:  b580       push     {r7, lr}\n"
    b"0x00000102:  af00       add      r7, sp, #0\n"
    b"0x00000104:  f000 f804  bl       #0x110\n"
    b"\n"
    b"Trace 0: 0x7f0000000100 [00800400/00000100/00000110/ff000200] main\n"
    b"----------------\n"
    b"IN: tick\n"
    b"0x00000110:  4770       bx       lr\n"
    b"\n"
    b"Trace 0: 0x7f0000000300 [00800400/00000110/00000110/ff000200] tick\n"
    b"Trace 0: 0x7f0000000300 [00800400/00000110/00000110/ff000200] tick\n"
    b"Trace 0: 0x7f0000000400 [0000000000000000/00000000000fe05b/000000b0/00000000] \n"
)
COUNTS = {0x100: 1, 0x102: 1, 0x104: 1, 0x110: 2, 0xFE05B: 1}


def _parse(chunks: list[bytes]) -> ExecLogParser:
    parser = ExecLogParser()
    for chunk in chunks:
        parser.feed(chunk)
    parser.feed(b"")
    return parser


def test_counts_instructions_of_executed_blocks() -> None:
    parser = _parse([LOG])
    assert parser.instruction_counts() == COUNTS
    assert parser.block_counts() == {0x100: 1, 0x110: 2, 0xFE05B: 1}
    assert parser.ignored_lines == 0


@given(st.lists(st.integers(min_value=0, max_value=len(LOG)), max_size=20))
def test_any_split_gives_the_same_counts(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(LOG)]
    chunks = [LOG[a:b] for a, b in itertools.pairwise(points) if a < b]  # b'' means EOF
    assert _parse(chunks).instruction_counts() == COUNTS


@given(st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), max_size=8))
def test_garbage_lines_are_skipped_and_counted(garbage: list[bytes]) -> None:
    noise = b"".join(b"qemu: " + g + b"\n" for g in garbage)
    parser = _parse([noise + LOG])
    assert parser.instruction_counts() == COUNTS
    assert parser.ignored_lines == len(garbage)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    parser = _parse([data])
    assert all(count > 0 for count in parser.instruction_counts().values())


def test_lcov_per_function_and_line() -> None:
    debug = DebugInfo(
        [
            FunctionInfo("main", "/src/p.c", 3, 0x100, 0x110),
            FunctionInfo("idle", "/src/p.c", 9, 0x120, 0x124),
        ],
        [
            _Row(0x100, 0x104, "/src/p.c", 4),
            _Row(0x104, 0x108, "/src/p.c", 5),
            _Row(0x110, 0x112, "/src/p.c", 7),
            _Row(0x120, 0x124, "/src/p.c", 10),
        ],
    )
    text = lcov(debug, _parse([LOG]).instruction_counts(), test_name="t")
    lines = text.splitlines()
    assert lines[:2] == ["TN:t", "SF:/src/p.c"]
    assert "FNDA:1,main" in lines
    assert "FNDA:0,idle" in lines
    assert "FNF:2" in lines
    assert "FNH:1" in lines
    assert [x for x in lines if x.startswith("DA:")] == ["DA:4,1", "DA:5,1", "DA:7,2", "DA:10,0"]
    assert "LF:4" in lines
    assert "LH:3" in lines
    assert lines[-1] == "end_of_record"
    assert debug.line_at(0x111) == ("/src/p.c", 7)
    assert debug.line_at(0x118) is None
