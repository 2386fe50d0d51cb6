"""Terminal emulation of a session, so that a late attach first sees the current screen.

:class:`TerminalEmulator` is the small interface a session needs (feed bytes, resize, reset,
render the state back as bytes); :class:`PyteEmulator` implements it with pyte. Any other
emulator can be plugged in through ``PtyDaemonConfig(emulator=factory)``.

Emulation is kept off the output hot path by :class:`LaggingScreen`: output is only appended
to a bounded backlog when it is forwarded; the emulator consumes that backlog later, when the
session is quiet (pyte parses about 0.2 MB/s, far slower than a terminal can produce). A
snapshot is the emulator's rendering followed by the not-yet-emulated backlog, so it is exact
whatever the emulator's lag. When a flood outruns the backlog, the oldest bytes are dropped, the
emulator is reset, and the backlog restarts at a line boundary: the snapshot is then the tail of
the output, which for a flood is what the screen shows anyway.
"""

from __future__ import annotations

from collections import deque
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
    """An emulator fed lazily from a bounded backlog; see the module docstring. Sans-I/O: the
    session decides when to call :meth:`catch_up`."""

    def __init__(self, emulator: TerminalEmulator, *, backlog: int) -> None:
        self.emulator = emulator
        self.backlog = backlog
        self._pending: deque[bytes | tuple[int, int]] = deque()
        self._pending_bytes = 0
        # the emulator's state is that of dropped output: reset it before it is used again
        # (once per flood, not once per overrun: a reset is costly)
        self._stale = False
        #: Times output was dropped from the backlog before being emulated.
        self.overruns = 0

    @property
    def pending_bytes(self) -> int:
        """Output not yet emulated."""
        return self._pending_bytes

    @property
    def pending(self) -> bool:
        """Whether anything (output or a resize) waits to be emulated."""
        return bool(self._pending)

    def append(self, data: bytes) -> None:
        """Record output (the hot path: O(1) amortised, no parsing)."""
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes > self.backlog:
            self._overrun()

    def resize(self, cols: int, rows: int) -> None:
        """Record a resize, applied in order with the output."""
        self._pending.append((cols, rows))

    def _overrun(self) -> None:
        self.overruns += 1
        self._stale = True  # resizes still apply below: a reset keeps the size
        pending = self._pending
        while self._pending_bytes > self.backlog // 2:
            item = pending.popleft()
            if isinstance(item, bytes):
                self._pending_bytes -= len(item)
            else:
                self.emulator.resize(*item)
        # restart at a line boundary so the snapshot does not begin inside an escape sequence
        while pending:
            head = pending[0]
            if isinstance(head, tuple):
                self.emulator.resize(*pending.popleft())
                continue
            newline = head.find(b"\n")
            pending.popleft()
            self._pending_bytes -= len(head)
            if newline >= 0:
                if rest := head[newline + 1 :]:
                    pending.appendleft(rest)
                    self._pending_bytes += len(rest)
                break

    def catch_up(self, max_bytes: int) -> None:
        """Emulate up to about ``max_bytes`` of the backlog (with every resize on the way)."""
        pending = self._pending
        self._refresh()
        done = 0
        while pending and done < max_bytes:
            item = pending.popleft()
            if isinstance(item, tuple):
                self.emulator.resize(*item)
                continue
            if len(item) > max_bytes - done:
                item, rest = item[: max_bytes - done], item[max_bytes - done :]
                pending.appendleft(rest)
            self._pending_bytes -= len(item)
            done += len(item)
            self.emulator.feed(item)
        if not pending and (compact := getattr(self.emulator, "compact", None)) is not None:
            compact()  # caught up: an emulator may free what it can rebuild (optional method)

    def _refresh(self) -> None:
        if self._stale:
            self._stale = False
            self.emulator.reset()

    def snapshot(self) -> bytes:
        """What a late attach receives first: the rendered state, then the raw backlog."""
        self._refresh()
        return self.emulator.render() + b"".join(i for i in self._pending if isinstance(i, bytes))
