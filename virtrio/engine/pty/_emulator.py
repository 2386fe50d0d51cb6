"""Terminal emulation of a session, so that a late attach first sees the current screen.

:class:`TerminalEmulator` is the small interface a session needs (feed bytes, resize, reset,
render the state back as bytes); :class:`PyteEmulator` implements it with pyte. Any other
emulator can be plugged in through ``PtyDaemonConfig(emulator=factory)``.

Emulation is kept off the output hot path, and out of idle sessions, by :class:`LaggingScreen`:
output is only appended to a bounded raw backlog when it is forwarded. The emulator is made only
once that backlog outgrows ``keep_raw`` (a quarter of it by default), and then consumes it when
the session is quiet (pyte parses about 0.2 MB/s, far slower than a terminal can produce), or
when the emulated screen is asked for. A snapshot is the emulator's rendering (none before there
is an emulator) followed by the not-yet-emulated raw output, so it is exact whatever the
emulator's lag: an idle shell's snapshot is simply its output so far, replayed by the attaching
terminal. When a flood outruns the backlog, the oldest bytes are dropped, the emulator is
dropped too (its state is stale), and the backlog restarts at a line boundary: the snapshot is
then the tail of the output, which for a flood is what the screen shows anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pyte
import pyte.graphics

__all__ = ["EmulatorFactory", "LaggingScreen", "PyteEmulator", "TerminalEmulator"]


class TerminalEmulator(Protocol):
    """What a session needs from a terminal emulator."""

    def feed(self, data: bytes) -> None:
        """Process terminal output."""

    def resize(self, cols: int, rows: int) -> None:
        """Change the screen size."""

    def reset(self) -> None:
        """Forget everything: a blank screen, cursor home, no scrollback."""

    def render(self) -> bytes:
        """Bytes that reproduce the scrollback, the screen and the cursor on a fresh terminal
        (ending with any unfinished escape sequence, so the output that follows completes it)."""

    def display(self) -> list[str]:
        """The screen's lines as text (for tests and ``list``)."""

    def cursor(self) -> tuple[int, int]:
        """The cursor as ``(column, row)``, zero-based."""


#: Makes an emulator for ``(cols, rows, scrollback_lines)``.
EmulatorFactory = Callable[[int, int, int], TerminalEmulator]

_FG = {name: code for code, name in {**pyte.graphics.FG_ANSI, **pyte.graphics.FG_AIXTERM}.items()}
_BG = {name: code for code, name in {**pyte.graphics.BG_ANSI, **pyte.graphics.BG_AIXTERM}.items()}


def _color(value: str, table: dict[str, int], extended: int) -> str:
    if value == "default":
        return ""
    if value in table:
        return f";{table[value]}"
    try:
        r, g, b = int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)
    except ValueError:
        return ""
    return f";{extended};2;{r};{g};{b}"


def _sgr(char: pyte.screens.Char) -> str:
    codes = "0"
    codes += ";1" if char.bold else ""
    codes += ";3" if char.italics else ""
    codes += ";4" if char.underscore else ""
    codes += ";5" if char.blink else ""
    codes += ";7" if char.reverse else ""
    codes += ";9" if char.strikethrough else ""
    codes += _color(char.fg, _FG, 38) + _color(char.bg, _BG, 48)
    return f"\x1b[{codes}m"


class _Screen(pyte.HistoryScreen):
    """pyte's screen with the erase of a real terminal.

    pyte's ``erase_in_display`` recolours only the cells its sparse buffer already holds, so a
    cell skipped by a tab or a cursor move stays in the default colours after ``ESC [ 2 J``
    while a real terminal (background colour erase) paints every cell. A snapshot, which writes
    those cells explicitly, would then come out in other colours than the screen it renders.
    Here every erased cell takes the cursor's attributes; an erase in the default attributes
    simply forgets the cells, which keeps an idle screen's buffer small.
    """

    def erase_in_display(self, how: int = 0, *args: object, **kwargs: object) -> None:
        if how not in (0, 1, 2, 3):
            return
        rows = {0: range(self.cursor.y + 1, self.lines), 1: range(self.cursor.y)}
        interval = rows.get(how, range(self.lines))
        self.dirty.update(interval)
        attrs = self.cursor.attrs
        for y in interval:
            self._fill(self.buffer[y], range(self.columns), attrs)
        if how in (0, 1):
            self.erase_in_line(how)

    def erase_in_line(self, how: int = 0, private: bool = False) -> None:
        columns = {0: range(self.cursor.x, self.columns), 1: range(self.cursor.x + 1)}
        if how not in (0, 1, 2):
            return
        self.dirty.add(self.cursor.y)
        interval = columns.get(how, range(self.columns))
        self._fill(self.buffer[self.cursor.y], interval, self.cursor.attrs)

    def _fill(
        self, line: dict[int, pyte.screens.Char], interval: range, attrs: pyte.screens.Char
    ) -> None:
        if attrs == self.default_char:
            for x in interval:
                line.pop(x, None)
        else:
            for x in interval:
                line[x] = attrs


class PyteEmulator:
    """A :class:`TerminalEmulator` on pyte's ``HistoryScreen``."""

    def __init__(self, cols: int, rows: int, scrollback: int) -> None:
        self._screen = _Screen(cols, rows, history=max(scrollback, 1), ratio=0.5)
        # the parser, made when output comes (its dispatch tables are most of an idle
        # emulator's memory: about 20 KiB); see compact()
        self._stream: pyte.ByteStream | None = None
        # bytes taken in but not acted on yet: an unfinished escape sequence or UTF-8 character
        self._unsettled = b""

    def _parser(self) -> pyte.ByteStream:
        stream = self._stream
        if stream is None:
            stream = self._stream = pyte.ByteStream(self._screen)
            if self._unsettled:  # a fresh parser in the state the dropped one was in
                stream.feed(self._unsettled)
        return stream

    def compact(self) -> None:
        """Drop the parser while the session is quiet; the next output makes a new one, fed
        first with the unfinished sequence, so it parses on exactly as the old one would.
        (Kept if it left UTF-8 mode: a fresh parser would not know.)"""
        if self._stream is not None and self._stream.use_utf8:
            self._stream = None
        self._screen.dirty.clear()  # pyte's record for renderers, unused here (2 KiB at rest)

    def feed(self, data: bytes) -> None:
        """Process terminal output."""
        stream = self._parser()
        stream.feed(data)
        if not stream._taking_plain_text:  # inside an escape sequence: it began at the last ESC
            combined = self._unsettled + data
            self._unsettled = combined[max(combined.rfind(b"\x1b"), 0) :]
        else:
            self._unsettled = stream.utf8_decoder.getstate()[0] if stream.use_utf8 else b""

    def resize(self, cols: int, rows: int) -> None:
        """Change the screen size."""
        self._screen.resize(rows, cols)

    def reset(self) -> None:
        """Blank screen, no scrollback."""
        self._screen.reset()
        self._stream = None
        self._unsettled = b""

    def display(self) -> list[str]:
        """The screen's lines as text."""
        return list(self._screen.display)

    def cursor(self) -> tuple[int, int]:
        """``(column, row)``, zero-based."""
        return self._screen.cursor.x, self._screen.cursor.y

    def _line(self, line: dict[int, pyte.screens.Char], columns: int) -> str:
        default = self._screen.default_char
        end = columns
        while end > 0 and line[end - 1] == default:
            end -= 1
        out: list[str] = []
        attrs = ""
        for x in range(end):
            char = line[x]
            if (sgr := _sgr(char)) != attrs:
                out.append(sgr)
                attrs = sgr
            out.append(char.data)
        if attrs and attrs != "\x1b[0m":
            out.append("\x1b[0m")
        return "".join(out)

    def render(self) -> bytes:
        """Scrollback lines (pushed up into the terminal's own scrollback), then the screen
        drawn line by line, then the cursor, then the unfinished sequence if any."""
        screen = self._screen
        out: list[str] = ["\x1b[0m"]
        history = list(screen.history.top)
        if history:
            out += [self._line(line, screen.columns) + "\r\n" for line in history]
            out.append("\r\n" * screen.lines)
        out.append("\x1b[H\x1b[2J")
        for y in range(screen.lines):
            if text := self._line(screen.buffer[y], screen.columns):
                out.append(f"\x1b[{y + 1};1H{text}")
        cursor = screen.cursor
        if cursor.x >= screen.columns:
            # past the last column (the next character wraps): a cursor position cannot say
            # that, so the last cell is printed again, which leaves the terminal in that state
            last = screen.buffer[cursor.y][screen.columns - 1]
            out.append(f"\x1b[{cursor.y + 1};{screen.columns}H{_sgr(last)}{last.data}\x1b[0m")
        else:
            out.append(f"\x1b[{cursor.y + 1};{cursor.x + 1}H")
        if (attrs := _sgr(cursor.attrs)) != "\x1b[0m":
            out.append(attrs)  # what the program set for the text it prints next
        if cursor.hidden:
            out.append("\x1b[?25l")
        return "".join(out).encode() + self._unsettled


class LaggingScreen:
    """A session's screen: raw output, replayed into an emulator only when needed; see the
    module docstring. Sans-I/O: the session decides when to call :meth:`catch_up`.

    ``factory(cols, rows, scrollback)`` makes the emulator, the first time one is needed: when
    the raw output outgrows :attr:`keep_raw` (and the session is quiet), or when someone asks
    for the emulated screen (:meth:`emulated`). Until then a snapshot is the raw output itself,
    exact by construction (a fresh terminal replays it), and the session holds just those
    bytes: a shell's prompt, not an emulator (pyte keeps a tuple per cell).
    """

    __slots__ = (
        "_cols",
        "_factory",
        "_raw",
        "_resizes",
        "_rows",
        "_scrollback",
        "backlog",
        "emulator",
        "keep_raw",
        "overruns",
    )

    def __init__(
        self,
        factory: EmulatorFactory,
        cols: int,
        rows: int,
        *,
        scrollback: int,
        backlog: int,
        keep_raw: int | None = None,
    ) -> None:
        self._factory = factory
        self._scrollback = scrollback
        #: The emulator, once there is one (None again after an overrun: it is stale then).
        self.emulator: TerminalEmulator | None = None
        # the size at the start of the raw output: that of an emulator made now
        self._cols, self._rows = cols, rows
        self.backlog = backlog
        #: Raw output kept as such before the emulator takes it in (bytes).
        self.keep_raw = backlog // 4 if keep_raw is None else keep_raw
        self._raw = bytearray()
        # resizes among the raw output: (offset in _raw, cols, rows), in order
        self._resizes: list[tuple[int, int, int]] | None = None
        #: Times output was dropped from the backlog before being emulated.
        self.overruns = 0

    @property
    def pending_bytes(self) -> int:
        """Output not yet emulated."""
        return len(self._raw)

    @property
    def pending(self) -> bool:
        """Whether anything (output or a resize) waits to be emulated."""
        return bool(self._raw or self._resizes)

    @property
    def wants_emulation(self) -> bool:
        """Whether the raw output outgrew :attr:`keep_raw`: time to emulate it (when quiet)."""
        return len(self._raw) > self.keep_raw

    def append(self, data: bytes) -> None:
        """Record output (the hot path: a copy into a buffer, no parsing)."""
        raw = self._raw
        raw += data
        if len(raw) > self.backlog:
            self._overrun()

    def resize(self, cols: int, rows: int) -> None:
        """Record a resize, applied in order with the output."""
        if self._raw:
            if self._resizes is None:
                self._resizes = []
            self._resizes.append((len(self._raw), cols, rows))
        elif self.emulator is not None:
            self.emulator.resize(cols, rows)
        else:
            self._cols, self._rows = cols, rows

    def _overrun(self) -> None:
        self.overruns += 1
        self.emulator = None  # its state is that of dropped output (freed; made anew later)
        raw = self._raw
        # keep the newest half, from a line boundary, so the snapshot does not begin inside an
        # escape sequence
        newline = raw.find(b"\n", len(raw) - self.backlog // 2)
        cut = len(raw) if newline < 0 else newline + 1
        del raw[:cut]
        if self._resizes is not None:
            for offset, cols, rows in self._resizes:
                if offset <= cut:  # before what is kept: the size it starts in
                    self._cols, self._rows = cols, rows
            kept = [(offset - cut, c, r) for offset, c, r in self._resizes if offset > cut]
            self._resizes = kept or None

    def _emulator(self) -> TerminalEmulator:
        if (emulator := self.emulator) is None:
            emulator = self.emulator = self._factory(self._cols, self._rows, self._scrollback)
        return emulator

    def catch_up(self, max_bytes: int) -> None:
        """Emulate up to ``max_bytes`` of the raw output (with every resize on the way).

        What it took is gone from the raw output even if the emulator raised (a buggy
        emulator costs the screen, and a caller's loop still ends)."""
        emulator = self._emulator()
        raw = self._raw
        size = min(max_bytes, len(raw))
        chunk = bytes(raw[:size])
        del raw[:size]
        resizes = self._resizes
        steps: list[tuple[int, int, int]] = []
        if resizes is not None:
            steps = [step for step in resizes if step[0] <= size]
            rest = [(offset - size, c, r) for offset, c, r in resizes if offset > size]
            self._resizes = rest or None
        done = 0
        for offset, cols, rows in steps:
            if offset > done:
                emulator.feed(chunk[done:offset])
                done = offset
            emulator.resize(cols, rows)
            self._cols, self._rows = cols, rows
        if size > done:
            emulator.feed(chunk[done:])
        if not self.pending and (compact := getattr(emulator, "compact", None)) is not None:
            compact()  # caught up: an emulator may free what it can rebuild (optional method)

    def emulated(self) -> TerminalEmulator:
        """The emulator, made if need be and caught up with all the output (replayed now, in
        one go: for tests and tools; a session catches up in slices)."""
        while self.pending:
            self.catch_up(1 << 30)
        return self._emulator()

    def reset(self) -> None:
        """Forget the emulated state (after an emulator failed); the raw output stays."""
        self.emulator = None

    def snapshot(self) -> bytes:
        """What a late attach receives first: the rendered state, then the raw output."""
        rendered = b"" if self.emulator is None else self.emulator.render()
        return rendered + self._raw
