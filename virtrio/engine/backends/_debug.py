"""Debugging through a GDB stub, shared by every backend (QEMU's gdbstub, Renode's
``machine StartGdbServer``, SkyEye's ``-d``): breakpoints that survive an emulator restart,
symbols from the running ELF, the program counter by architecture."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import attrs

from virtrio.channels.gdb import GdbClient
from virtrio.errors import ConfigError

from ._types import Breakpoint, BreakpointKind

__all__ = ["GdbDebugger", "elf_symbols"]


def elf_symbols(path: str | os.PathLike[str]) -> dict[str, int]:
    """The named function and object symbols of an ELF (Thumb's bit 0 cleared on ARM)."""
    from elftools.elf.elffile import ELFFile  # the backends extra

    with open(path, "rb") as stream:
        elf = ELFFile(stream)
        table: Any = elf.get_section_by_name(".symtab")
        if table is None:
            return {}
        arm = elf["e_machine"] == "EM_ARM"
        out: dict[str, int] = {}
        for symbol in table.iter_symbols():
            kind = symbol["st_info"]["type"]
            if symbol.name and kind in ("STT_FUNC", "STT_OBJECT"):
                value = symbol["st_value"]
                out[symbol.name] = value & ~1 if arm and kind == "STT_FUNC" else value
        return out


_PC_NAMES = ("pc", "rip", "eip")
_WATCH_ACCESS: dict[BreakpointKind, Literal["write", "read", "access"]] = {
    BreakpointKind.WRITE: "write",
    BreakpointKind.READ: "read",
    BreakpointKind.ACCESS: "access",
}


@attrs.define
class GdbDebugger:
    """The breakpoints of an instance and the symbols of its program, applied to whichever GDB
    connection the instance has now (:meth:`attach` after every emulator start)."""

    symbols: dict[str, int] = attrs.field(factory=dict)
    breakpoints: dict[Breakpoint, int | None] = attrs.field(factory=dict)
    gdb: GdbClient | None = None

    def load_symbols(self, elf: Path | None) -> None:
        """Use the symbols of ``elf`` (None: a raw image, no symbols)."""
        self.symbols = elf_symbols(elf) if elf is not None else {}

    def address_of(self, symbol: str) -> int:
        """The address of ``symbol`` in the running program.

        Raises:
            ConfigError: the program has no such symbol (or no symbols at all).
        """
        try:
            return self.symbols[symbol]
        except KeyError:
            what = "has no symbols" if not self.symbols else f"has no symbol {symbol!r}"
            raise ConfigError(f"the running program {what}") from None

    def resolve(self, breakpoint: Breakpoint) -> int:
        """The address a breakpoint stands for."""
        if breakpoint.address is not None:
            return breakpoint.address
        assert breakpoint.symbol is not None
        return self.address_of(breakpoint.symbol)

    async def attach(self, gdb: GdbClient) -> None:
        """Use ``gdb`` from now on and set every breakpoint on it (symbols resolved in the
        program now loaded).

        Raises:
            ConfigError: a breakpoint names a symbol the program does not have.
        """
        self.gdb = gdb
        for breakpoint in list(self.breakpoints):
            address = self.resolve(breakpoint)
            self.breakpoints[breakpoint] = address
            await self._insert(gdb, breakpoint, address)

    def detach(self) -> None:
        """The connection is gone (the emulator stopped); breakpoints are kept."""
        self.gdb = None

    async def add(self, breakpoint: Breakpoint) -> int | None:
        """Set a breakpoint now (if connected) and after every restart; returns its address,
        or None for a symbol while no program is loaded (resolved when one starts)."""
        if self.gdb is None and breakpoint.symbol is not None and not self.symbols:
            self.breakpoints[breakpoint] = None
            return None
        address = self.resolve(breakpoint)
        if self.gdb is not None and breakpoint not in self.breakpoints:
            await self._insert(self.gdb, breakpoint, address)
        self.breakpoints[breakpoint] = address
        return address

    async def remove(self, breakpoint: Breakpoint) -> None:
        """Remove a breakpoint.

        Raises:
            ConfigError: it was not set.
        """
        if breakpoint not in self.breakpoints:
            raise ConfigError(f"no such breakpoint: {breakpoint}")
        address = self.breakpoints.pop(breakpoint)
        if self.gdb is not None and address is not None:
            if breakpoint.is_watchpoint:
                access = _WATCH_ACCESS[breakpoint.kind]
                await self.gdb.remove_watchpoint(address, breakpoint.length, access=access)
            else:
                hardware = breakpoint.kind is BreakpointKind.HARDWARE
                await self.gdb.remove_breakpoint(address, hardware=hardware)

    @staticmethod
    async def _insert(gdb: GdbClient, breakpoint: Breakpoint, address: int) -> None:
        if breakpoint.is_watchpoint:
            access = _WATCH_ACCESS[breakpoint.kind]
            await gdb.set_watchpoint(address, breakpoint.length, access=access)
        else:
            await gdb.set_breakpoint(address, hardware=breakpoint.kind is BreakpointKind.HARDWARE)

    @staticmethod
    def pc_name(gdb: GdbClient) -> str:
        """The name of the program counter in this target's description."""
        names = {r.name for r in gdb.target.registers}
        for name in _PC_NAMES:
            if name in names:
                return name
        raise ConfigError(f"no program counter among the target's registers ({sorted(names)})")

    @staticmethod
    def select(registers: dict[str, int], scope: Iterable[str] | None) -> dict[str, int]:
        """``registers`` limited to the names in ``scope`` (all when None).

        Raises:
            ConfigError: a name in ``scope`` is not a register of the target.
        """
        if scope is None:
            return registers
        wanted = list(scope)
        missing = [name for name in wanted if name not in registers]
        if missing:
            raise ConfigError(f"no register(s) {missing} (the target has {sorted(registers)})")
        return {name: registers[name] for name in wanted}
