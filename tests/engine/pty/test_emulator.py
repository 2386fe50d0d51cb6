"""Lagging terminal emulation: a snapshot reproduces the screen whatever the emulator's lag."""

from __future__ import annotations

import pyte
from hypothesis import given, strategies as st

from tests.strategies import splits
from virtrio.engine.pty import PyteEmulator
from virtrio.engine.pty._emulator import LaggingScreen

pieces = st.sampled_from(
    ["a", "bc", "hello world", " ", "\r\n", "\n", "\x1b[1;31m", "\x1b[0m", "\x1b[44m", "\x1b[2J",
     "\x1b[H", "\x1b[5;10H", "\x1b[K", "\x1b[38;2;1;2;3m", "é", "\t"]
)  # fmt: skip
outputs = st.lists(pieces, max_size=200).map(lambda p: "".join(p).encode())


def replay(data: bytes, cols: int = 40, rows: int = 10) -> tuple[list[str], tuple[int, int]]:
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(data)
    return screen.display, (screen.cursor.x, screen.cursor.y)


def lagging_screen(backlog: int, keep_raw: int | None = None) -> LaggingScreen:
    return LaggingScreen(PyteEmulator, 40, 10, scrollback=100, backlog=backlog, keep_raw=keep_raw)


def visible(char: pyte.screens.Char) -> object:
    """What a person sees of a cell: on a blank, the foreground colour, bold, italics and blink
    show nothing (unless the cell is reversed), so they are not compared there."""
    if char.data != " " or char.reverse:
        return char
    return (char.bg, char.underscore, char.strikethrough)


def attributes(emulator: PyteEmulator) -> list[object]:
    screen = emulator._screen
    return [
        visible(screen.buffer[y][x]) for y in range(screen.lines) for x in range(screen.columns)
    ]


@given(outputs, st.data())
def test_snapshot_reproduces_the_screen_at_any_lag(output: bytes, data: st.DataObject) -> None:
    direct = PyteEmulator(40, 10, 100)
    direct.feed(output)
    lagging = lagging_screen(1 << 20)
    for chunk in data.draw(splits(output)):
        lagging.append(chunk)
        if data.draw(st.booleans()):  # else the emulator is not made yet, or lags
            lagging.catch_up(data.draw(st.integers(0, 64)))
    replayed = PyteEmulator(40, 10, 100)
    replayed.feed(lagging.snapshot() + b"Z")  # Z: printed with the attributes in force
    direct.feed(b"Z")
    assert replayed.display() == direct.display()
    assert attributes(replayed) == attributes(direct)
    assert replayed.cursor() == direct.cursor()


@given(outputs, st.data())
def test_dropping_the_parser_between_chunks_changes_nothing(
    output: bytes, data: st.DataObject
) -> None:
    """compact() (an idle session's parser freed) at any split, even inside an escape
    sequence or a UTF-8 character, leaves the screen, its colours and the cursor as if the
    output had been fed in one go."""
    direct = PyteEmulator(40, 10, 100)
    direct.feed(output)
    compacted = PyteEmulator(40, 10, 100)
    for chunk in data.draw(splits(output)):
        compacted.feed(chunk)
        if data.draw(st.booleans()):
            compacted.compact()
    assert compacted.display() == direct.display()
    assert attributes(compacted) == attributes(direct)
    assert compacted.cursor() == direct.cursor()
    assert compacted.render() == direct.render()


def test_render_keeps_colours_and_scrollback() -> None:
    emulator = PyteEmulator(20, 3, 10)
    emulator.feed(b"first\r\nsecond\r\n\x1b[1;32mgreen\x1b[0m\r\nlast")
    rendered = emulator.render()
    assert rendered.index(b"first\r\n") < rendered.index(b"\x1b[H\x1b[2J")  # history first
    assert b"\x1b[0;1;32mgreen\x1b[0m" in rendered
    assert replay(rendered, 20, 3)[0] == ["second".ljust(20), "green".ljust(20), "last".ljust(20)]


def test_a_flood_keeps_the_tail_from_a_line_boundary() -> None:
    lagging = lagging_screen(4096)
    lagging.catch_up(0)  # an emulator, which the flood makes stale
    for n in range(2000):
        lagging.append(f"line {n}\r\n".encode())
    assert lagging.overruns > 0
    assert lagging.emulator is None  # dropped with the output it had taken in
    assert lagging.pending_bytes <= 4096
    snapshot = lagging.snapshot()
    assert snapshot.split(b"\r\n", 1)[0].removeprefix(b"line ").isdigit()  # no cut line first
    assert replay(snapshot)[0][-2].rstrip() == "line 1999"


def test_resizes_apply_in_order_with_output() -> None:
    lagging = lagging_screen(1 << 20)
    lagging.append(b"x" * 30)
    lagging.resize(20, 5)
    lagging.append(b"\r\nshort")
    lagging.catch_up(1 << 20)
    assert not lagging.pending
    assert lagging.emulator is not None
    assert len(lagging.emulator.display()) == 5
    assert lagging.emulator.display()[1].rstrip() == "short"


def test_the_emulator_is_made_only_when_needed() -> None:
    """An idle session keeps its raw output, no emulator; the snapshot is that output."""
    lagging = lagging_screen(1 << 20, keep_raw=64)
    lagging.resize(30, 8)  # before any output: the size the emulator will start in
    lagging.append(b"\x1b[1;31mred\x1b[0m $ ")
    assert lagging.emulator is None
    assert not lagging.wants_emulation
    assert lagging.snapshot() == b"\x1b[1;31mred\x1b[0m $ "
    lagging.append(b"x" * 64)
    assert lagging.wants_emulation  # the session emulates it once output pauses
    assert lagging.emulator is None


@given(outputs, st.data())
def test_a_screen_made_late_is_the_screen_fed_all_along(output: bytes, data: st.DataObject) -> None:
    """The emulator made on demand, from the raw output (resizes in between included), shows
    what one fed all along shows."""
    direct = PyteEmulator(40, 10, 100)
    lazy = lagging_screen(1 << 20)
    for chunk in data.draw(splits(output)):
        direct.feed(chunk)
        lazy.append(chunk)
        if data.draw(st.booleans()):
            cols, rows = data.draw(st.integers(5, 50)), data.draw(st.integers(2, 12))
            direct.resize(cols, rows)
            lazy.resize(cols, rows)
    emulator = lazy.emulated()
    assert not lazy.pending
    assert emulator.display() == direct.display()
    assert emulator.cursor() == direct.cursor()
    assert emulator.render() == direct.render()


def test_a_snapshot_keeps_a_pending_wrap() -> None:
    """A line filled to the last column leaves the cursor waiting to wrap: the next character
    goes to the next line, after a snapshot as on the live screen."""
    output = b"aaaaahello world\taaabchello world"
    direct = PyteEmulator(40, 10, 100)
    direct.feed(output)
    replayed = PyteEmulator(40, 10, 100)
    replayed.feed(direct.render())
    direct.feed(b"Z")
    replayed.feed(b"Z")
    assert replayed.display() == direct.display()
    assert replayed.cursor() == direct.cursor() == (1, 1)


def test_an_erase_paints_cells_a_tab_skipped() -> None:
    """``ESC [ 2 J`` paints every cell in the current background, as a real terminal does, so a
    snapshot (which writes the cells a tab skipped) replays in the same colours."""
    output = b"\x1b[44m\ta\x1b[2J"
    direct = PyteEmulator(40, 10, 100)
    direct.feed(output)
    replayed = PyteEmulator(40, 10, 100)
    replayed.feed(direct.render() + b"Z")
    direct.feed(b"Z")
    assert attributes(replayed) == attributes(direct)
    assert direct._screen.buffer[0][0].bg == "blue"
