"""Coverage from QEMU's execution log (sans-I/O), mapped onto an ELF's debug info, as lcov.

QEMU run with ``-d in_asm,exec,nochain -D FILE`` writes, for each translation block it
translates, its instructions (``IN:`` then one ``0xADDR:  bytes  mnemonic`` line each), and for
each block it executes a ``Trace`` line with the block's start address (``nochain`` makes every
execution of a block go through the logger, so the count is exact). :class:`ExecLogParser`
turns that into a hit count per instruction address; :class:`DebugInfo` (pyelftools, reading
the DWARF line programs and subprogram entries) maps addresses to functions and source lines;
:func:`lcov` writes the result in lcov's ``.info`` format (``genhtml`` and CI tools read it).

Why pyelftools rather than binutils' ``addr2line``: coverage needs every line that *could* run
(to report it as 0), not only the addresses that did, so the whole line table is read anyway;
pyelftools gives it in-process for any architecture, where addr2line is one per target
(``arm-none-eabi-addr2line``...) and would need a process per query or a pipe protocol.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

__all__ = ["DebugInfo", "ExecLogParser", "FunctionInfo", "lcov", "parse_exec_logs"]


class ExecLogParser:
    """Feed QEMU's ``in_asm,exec`` log in any pieces; read :meth:`instruction_counts`.

    Lines it does not know (other log items, warnings) are counted in :attr:`ignored_lines`
    and otherwise skipped: the log is QEMU's, not a protocol that can be violated.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._block: list[int] | None = None
        self._blocks: dict[int, tuple[int, ...]] = {}
        self._executed: Counter[int] = Counter()
        self.ignored_lines = 0

    def feed(self, data: bytes) -> None:
        """Parse more of the log (``b""`` at the end flushes a last unterminated line)."""
        if not data:
            if self._partial:
                self._line(self._partial)
                self._partial = b""
            self._end_block()
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _end_block(self) -> None:
        if self._block:
            self._blocks[self._block[0]] = tuple(self._block)
        self._block = None

    def _line(self, raw: bytes) -> None:
        line = raw.rstrip(b"\r")
        if line.startswith(b"Trace "):
            self._end_block()
            start, end = line.find(b"["), line.find(b"]")
            fields = line[start + 1 : end].split(b"/") if 0 <= start < end else []
            try:
                self._executed[int(fields[1], 16)] += 1
            except (IndexError, ValueError):
                self.ignored_lines += 1
        elif line.startswith(b"IN:"):
            self._end_block()
            self._block = []
        elif self._block is not None and line.startswith(b"0x"):
            address, colon, _ = line.partition(b":")
            try:
                self._block.append(int(address, 16))
            except ValueError:
                self.ignored_lines += 1
            if not colon:
                self.ignored_lines += 1
        elif not line.strip() or line.startswith(b"----"):
            self._end_block()
        else:
            self.ignored_lines += 1

    def block_counts(self) -> dict[int, int]:
        """How many times each translation block (by start address) ran."""
        return dict(self._executed)

    def instruction_counts(self) -> dict[int, int]:
        """How many times each instruction address ran (a block whose instructions the log
        did not list counts only its first address)."""
        counts: Counter[int] = Counter()
        for start, times in self._executed.items():
            for address in self._blocks.get(start, (start,)):
                counts[address] += times
        return dict(counts)


@attrs.frozen
class FunctionInfo:
    """A function of the program: its name, where it is declared, its address range."""

    name: str
    file: str
    line: int
    low: int
    high: int


@attrs.frozen
class _Row:
    start: int
    end: int
    file: str
    line: int


class DebugInfo:
    """An ELF's functions and line table (DWARF 2-5), for mapping addresses to source."""

    def __init__(self, functions: list[FunctionInfo], rows: list[_Row]) -> None:
        self.functions = sorted(functions, key=lambda f: f.low)
        self._rows = sorted(rows, key=lambda r: r.start)
        self._starts = [r.start for r in self._rows]

    @classmethod
    def from_elf(cls, path: str | os.PathLike[str]) -> DebugInfo:
        """Read the debug info of the ELF at ``path`` (an ELF without DWARF gives functions
        from its symbol table and no lines)."""
        from elftools.elf.elffile import ELFFile  # the backends extra

        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            if not elf.has_dwarf_info():
                return cls(_symbol_functions(elf), [])
            dwarf = elf.get_dwarf_info()
            functions: list[FunctionInfo] = []
            rows: list[_Row] = []
            for unit in dwarf.iter_CUs():
                program = dwarf.line_program_for_CU(unit)
                if program is None:
                    continue
                files = _file_names(program, unit)
                rows.extend(_rows(program, files))
                functions.extend(_unit_functions(unit, files, program.header.version))
            return cls(functions or _symbol_functions(elf), rows)

    def line_at(self, address: int) -> tuple[str, int] | None:
        """The source file and line of the instruction at ``address``, if known."""
        index = bisect.bisect_right(self._starts, address) - 1
        if index >= 0 and address < self._rows[index].end:
            row = self._rows[index]
            return row.file, row.line
        return None

    def lines(self) -> dict[str, set[int]]:
        """Every line that has code, by file."""
        out: dict[str, set[int]] = {}
        for row in self._rows:
            out.setdefault(row.file, set()).add(row.line)
        return out

    def function(self, name: str) -> FunctionInfo:
        """The function called ``name``.

        Raises:
            KeyError: the program has no such function.
        """
        for function in self.functions:
            if function.name == name:
                return function
        raise KeyError(name)


def _attr(die: Any, name: str) -> Any:
    value = die.attributes.get(name)
    return None if value is None else value.value


def _file_names(program: Any, unit: Any) -> list[str]:
    header = program.header
    dirs = [
        d.decode(errors="replace") if isinstance(d, bytes) else d for d in header.include_directory
    ]
    comp_dir = _attr(unit.get_top_DIE(), "DW_AT_comp_dir")
    base = comp_dir.decode(errors="replace") if isinstance(comp_dir, bytes) else (comp_dir or "")
    names = []
    for entry in header.file_entry:
        name = entry.name.decode(errors="replace") if isinstance(entry.name, bytes) else entry.name
        if header.version >= 5:
            folder = dirs[entry.dir_index] if entry.dir_index < len(dirs) else base
        else:
            folder = dirs[entry.dir_index - 1] if 0 < entry.dir_index <= len(dirs) else base
        names.append(os.path.normpath(os.path.join(base, folder, name)))
    return names


def _file(files: list[str], index: int, version: int) -> str:
    position = index if version >= 5 else index - 1
    return files[position] if 0 <= position < len(files) else "<unknown>"


def _rows(program: Any, files: list[str]) -> Iterable[_Row]:
    version = program.header.version
    previous: Any = None
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        if previous is not None and state.address > previous.address:
            yield _Row(
                previous.address, state.address, _file(files, previous.file, version), previous.line
            )
        previous = None if state.end_sequence else state


def _unit_functions(unit: Any, files: list[str], version: int) -> Iterable[FunctionInfo]:
    # decl_file indexes the line program's file table, whose version may differ from the unit's
    for die in unit.iter_DIEs():
        if die.tag != "DW_TAG_subprogram" or "DW_AT_low_pc" not in die.attributes:
            continue
        low = _attr(die, "DW_AT_low_pc")
        high_attr = die.attributes.get("DW_AT_high_pc")
        if high_attr is None:
            high = low + 1
        elif high_attr.form.startswith("DW_FORM_addr"):
            high = high_attr.value
        else:
            high = low + high_attr.value
        name = _attr(die, "DW_AT_name")
        decl_file = _attr(die, "DW_AT_decl_file")
        yield FunctionInfo(
            name.decode(errors="replace") if isinstance(name, bytes) else str(name),
            _file(files, decl_file, version) if decl_file is not None else "<unknown>",
            _attr(die, "DW_AT_decl_line") or 0,
            low,
            high,
        )


def _symbol_functions(elf: Any) -> list[FunctionInfo]:
    table = elf.get_section_by_name(".symtab")
    if table is None:
        return []
    thumb = elf["e_machine"] == "EM_ARM"
    out = []
    for symbol in table.iter_symbols():
        if symbol["st_info"]["type"] == "STT_FUNC" and symbol["st_value"]:
            low = symbol["st_value"] & ~1 if thumb else symbol["st_value"]
            out.append(
                FunctionInfo(symbol.name, "<unknown>", 0, low, low + max(1, symbol["st_size"]))
            )
    return out


def lcov(debug: DebugInfo, counts: Mapping[int, int], *, test_name: str = "") -> str:
    """An lcov ``.info`` tracefile: per-function (FN/FNDA) and per-line (DA) hit counts."""
    line_hits: dict[str, Counter[int]] = {f: Counter() for f in debug.lines()}
    for address, times in counts.items():
        where = debug.line_at(address)
        if where is not None:
            file, line = where
            hits = line_hits.setdefault(file, Counter())
            hits[line] = max(hits[line], times)
    functions: dict[str, list[FunctionInfo]] = {}
    for function in debug.functions:
        functions.setdefault(function.file, []).append(function)
    out: list[str] = []
    for file in sorted(set(line_hits) | set(functions) - {"<unknown>"}):
        out += [f"TN:{test_name}", f"SF:{file}"]
        hit_functions = 0
        for function in functions.get(file, []):
            out.append(f"FN:{function.line},{function.name}")
        for function in functions.get(file, []):
            entry = counts.get(function.low, 0)
            hit_functions += entry > 0
            out.append(f"FNDA:{entry},{function.name}")
        out += [f"FNF:{len(functions.get(file, []))}", f"FNH:{hit_functions}"]
        hits = line_hits.get(file, Counter())
        lines = sorted(debug.lines().get(file, set()) | set(hits))
        out += [f"DA:{line},{hits[line]}" for line in lines]
        out += [f"LF:{len(lines)}", f"LH:{sum(1 for line in lines if hits[line])}", "end_of_record"]
    return "\n".join(out) + "\n"


def parse_exec_logs(paths: Iterable[Path], *, chunk: int = 1 << 20) -> ExecLogParser:
    """Parse QEMU execution logs (each file on its own: a block listing never spans files)."""
    parser = ExecLogParser()
    for path in paths:
        with open(path, "rb") as stream:
            while data := stream.read(chunk):
                parser.feed(data)
        parser.feed(b"")
    return parser
