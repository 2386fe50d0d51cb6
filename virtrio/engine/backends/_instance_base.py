"""What every GDB-debugged instance shares: uploaded programs, breakpoints, registers, memory,
run control, the console, and the capability checks in front of each. A backend subclasses
:class:`GdbInstanceBase` and provides power, program start, snapshots and coverage."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import trio

from virtrio.channels.gdb import GdbClient
from virtrio.errors import ConfigError

from ._console import ConsoleBuffer
from ._debug import GdbDebugger
from ._types import (
    Artifact,
    BackendStateError,
    Breakpoint,
    Capabilities,
    Capability,
    ProgramFormat,
    ProgramInfo,
    StartOptions,
)

__all__ = ["GdbInstanceBase"]


class GdbInstanceBase:
    """The backend-neutral half of an instance (see
    :class:`~virtrio.engine.backends.BackendInstance`)."""

    backend_name = "backend"

    def __init__(
        self,
        instance_id: str,
        workdir: Path,
        capabilities: Capabilities,
        *,
        call_timeout: float = 10.0,
    ) -> None:
        self._id = instance_id
        self._workdir = workdir
        self._capabilities = capabilities
        self._call_timeout = call_timeout
        self._console = ConsoleBuffer(workdir / "console.log")
        self._debugger = GdbDebugger()
        self._programs: dict[str, ProgramInfo] = {}
        self._program: ProgramInfo | None = None

    @property
    def instance_id(self) -> str:
        """This instance's id."""
        return self._id

    @property
    def workdir(self) -> Path:
        """Where its sockets, programs, logs and artefacts live."""
        return self._workdir

    def capabilities(self) -> Capabilities:
        """What this instance can do (the board and the backend's settings decide)."""
        return self._capabilities

    def _need(self, capability: Capability, doing: str) -> None:
        self._capabilities.require(capability, doing=doing)

    @property
    def gdb(self) -> GdbClient:
        """The GDB connection to the running emulator.

        Raises:
            BackendStateError: the instance is powered off.
            BackendExitedError: its emulator exited.
        """
        gdb = self._debugger.gdb
        if gdb is None:
            raise BackendStateError(
                f"instance {self._id} is powered off", backend=self.backend_name
            )
        return gdb

    # --- programs ------------------------------------------------------------------------

    async def upload_program(
        self,
        data: bytes,
        *,
        format: ProgramFormat = ProgramFormat.ELF,
        load_address: int | None = None,
        name: str = "",
    ) -> str:
        """Store a program (an ELF, or a raw image with its load address); returns its id.

        Raises:
            UnsupportedCapabilityError: the format is not supported here.
            ConfigError: an ELF that is not an ELF, a raw image without a load address.
        """
        elf = format is ProgramFormat.ELF
        capability = Capability.PROGRAM_ELF if elf else Capability.PROGRAM_RAW
        self._need(capability, f"upload_program(format={format.value!r})")
        if elf and not data.startswith(b"\x7fELF"):
            raise ConfigError("upload_program: the data is not an ELF file (use format='raw')")
        program_id = f"prog{len(self._programs) + 1}"
        folder = self._workdir / "programs"
        await trio.Path(folder).mkdir(exist_ok=True)
        path = folder / f"{program_id}.{'elf' if elf else 'bin'}"
        info = ProgramInfo(program_id, path, format, load_address, name or program_id)
        await trio.Path(path).write_bytes(data)
        self._programs[program_id] = info
        return program_id

    def program(self, program_id: str) -> ProgramInfo:
        """An uploaded program.

        Raises:
            ConfigError: no program has this id.
        """
        try:
            return self._programs[program_id]
        except KeyError:
            known = ", ".join(self._programs) or "none"
            raise ConfigError(f"no program {program_id!r} (uploaded: {known})") from None

    def _select_program(self, program_id: str, options: StartOptions) -> ProgramInfo:
        program = self.program(program_id)
        if options.entry is not None:
            self._need(Capability.START_AT_ENTRY, "start_program(entry=...)")
        self._program = program
        self._debugger.load_symbols(program.path if program.format is ProgramFormat.ELF else None)
        return program

    async def _run_from(self, options: StartOptions) -> None:
        gdb = self.gdb
        if options.entry is not None:
            await gdb.write_register(GdbDebugger.pc_name(gdb), options.entry)
        if not options.halted:
            await gdb.continue_()

    def address_of(self, symbol: str) -> int:
        """The address of a function or variable of the running ELF."""
        return self._debugger.address_of(symbol)

    # --- run control and debugging -------------------------------------------------------

    async def pause(self) -> None:
        """Stop the CPU (a GDB interrupt), keeping all state."""
        self._need(Capability.PAUSE, "pause")
        await self.gdb.interrupt()

    async def resume(self) -> None:
        """Let the CPU run (no-op if it runs)."""
        self._need(Capability.PAUSE, "resume")
        if not self.gdb.is_running:
            await self.gdb.continue_()

    async def set_breakpoint(self, breakpoint: Breakpoint) -> int | None:
        """Set a breakpoint (or watchpoint), now and after every restart; returns its address
        (None for a symbol while no program runs: it is resolved when one starts)."""
        watch = breakpoint.is_watchpoint
        self._need(Capability.WATCHPOINTS if watch else Capability.BREAKPOINTS, "set_breakpoint")
        return await self._debugger.add(breakpoint)

    async def remove_breakpoint(self, breakpoint: Breakpoint) -> None:
        """Remove a breakpoint set by :meth:`set_breakpoint`."""
        await self._debugger.remove(breakpoint)

    async def read_registers(self, scope: Iterable[str] | None = None) -> dict[str, int]:
        """The CPU's registers (the CPU must be stopped)."""
        self._need(Capability.REGISTERS, "read_registers")
        return GdbDebugger.select(await self.gdb.read_registers(), scope)

    async def read_memory(self, address: int, size: int) -> bytes:
        """Guest memory (the CPU must be stopped)."""
        self._need(Capability.MEMORY, "read_memory")
        return await self.gdb.read_memory(address, size)

    async def write_memory(self, address: int, data: bytes) -> None:
        """Write guest memory (the CPU must be stopped)."""
        self._need(Capability.MEMORY, "write_memory")
        await self.gdb.write_memory(address, data)

    async def continue_(self) -> None:
        """Let a stopped CPU run until a breakpoint, :meth:`pause` or for ever."""
        self._need(Capability.STEP, "continue_")
        await self.gdb.continue_()

    async def step(self) -> int:
        """Execute one instruction; returns the new program counter."""
        self._need(Capability.STEP, "step")
        gdb = self.gdb
        await gdb.step()
        return await gdb.read_register(GdbDebugger.pc_name(gdb))

    async def wait_stop(self, *, timeout: float | None = None) -> int:
        """Wait until the CPU stops; returns the program counter."""
        self._need(Capability.STEP, "wait_stop")
        gdb = self.gdb
        await gdb.wait_stop(self._call_timeout if timeout is None else timeout)
        return await gdb.read_register(GdbDebugger.pc_name(gdb))

    # --- what a backend may lack ---------------------------------------------------------

    async def create_snapshot(self) -> str:
        """Save the machine state (this backend: see :meth:`capabilities`)."""
        self._need(Capability.SNAPSHOTS, "create_snapshot")
        raise AssertionError("a backend with snapshots overrides create_snapshot")

    async def restore_snapshot(self, snapshot_id: str) -> None:
        """Restore a saved state (this backend: see :meth:`capabilities`)."""
        self._need(Capability.SNAPSHOTS, "restore_snapshot")
        raise AssertionError("a backend with snapshots overrides restore_snapshot")

    async def export_coverage(self, dest: Path | None = None) -> Artifact:
        """Coverage as lcov (this backend: see :meth:`capabilities`)."""
        self._need(Capability.COVERAGE, "export_coverage")
        raise AssertionError("a backend with coverage overrides export_coverage")

    async def export_trace(self, dest: Path | None = None) -> Artifact:
        """The execution trace (this backend: see :meth:`capabilities`)."""
        self._need(Capability.TRACE, "export_trace")
        raise AssertionError("a backend with traces overrides export_trace")

    async def screenshot(self) -> bytes:
        """The display as a PNG (this backend: see :meth:`capabilities`)."""
        self._need(Capability.DISPLAY, "screenshot")
        raise AssertionError("a backend with a display overrides screenshot")

    # --- console -------------------------------------------------------------------------

    def console_output(self) -> bytes:
        """What the console UART wrote since the instance was created (its last
        ``console.history_limit`` bytes; the log file in the work dir has it all)."""
        return self._console.output()

    async def wait_console(self, text: bytes, *, timeout: float | None = None) -> bytes:
        """Wait until the console output contains ``text``; returns all of it."""
        self._need(Capability.CONSOLE, "wait_console")
        limit = self._call_timeout if timeout is None else timeout
        return await self._console.wait_for(text, timeout=limit if limit > 0 else math.inf)

    async def write_console(self, data: bytes) -> None:
        """Send ``data`` to the console UART (this backend: none; QEMU overrides it).

        Raises:
            BackendStateError: this backend takes no console input (nothing was sent).
        """
        raise BackendStateError(
            f"instance {self._id}: this backend takes no console input", backend=self.backend_name
        )

    @property
    def console(self) -> ConsoleBuffer:
        """The console (subscribe to stream its output)."""
        return self._console
