"""The QEMU backend's instance: a QEMU process (restarted on power cycles and program
starts) owned by the instance's nursery, with QMP, the gdbstub and the console on Unix sockets
in its work directory.

Power goes through QMP (``system_reset``, ``quit``) and the process; run control, breakpoints,
registers and memory through the GDB client; snapshots through QMP jobs (see ``_snapshots``);
coverage and trace from QEMU's execution log when the backend has ``trace=True``.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from virtrio._nursery import open_service_nursery
from virtrio.channels.gdb import GdbClient
from virtrio.channels.qmp import QmpClient
from virtrio.errors import ConfigError

from ._console import ConsoleBuffer
from ._coverage import DebugInfo, lcov, parse_exec_logs
from ._debug import GdbDebugger
from ._qemu_board import QemuNodePlan
from ._qemu_run import QemuRun, RunSpec, serve_run
from ._snapshots import create_image, run_snapshot_job, snapshot_drive_args
from ._types import (
    Artifact,
    BackendError,
    Breakpoint,
    Capabilities,
    Capability,
    ProgramFormat,
    ProgramInfo,
    StartOptions,
)

__all__ = ["QemuInstance", "QemuSettings", "open_qemu_instance"]


@attrs.frozen
class QemuSettings:
    """How the QEMU backend runs its instances.

    ``binaries`` maps a QEMU binary name to the program to run instead (a path); ``trace``
    turns on the execution log that coverage and trace need (it slows the guest down).
    """

    binaries: dict[str, str] = attrs.field(factory=dict)
    trace: bool = False
    connect_timeout: float = 10.0
    call_timeout: float = 10.0
    stop_grace: float = 3.0
    qemu_img: str = "qemu-img"


class QemuInstance:
    """One QEMU machine. Made by :func:`open_qemu_instance` (or an adapter)."""

    def __init__(
        self,
        plan: QemuNodePlan,
        instance_id: str,
        workdir: Path,
        settings: QemuSettings,
        capabilities: Capabilities,
        nursery: trio.Nursery,
    ) -> None:
        self._plan = plan
        self._id = instance_id
        self._workdir = workdir
        self._settings = settings
        self._capabilities = capabilities
        self._nursery = nursery
        self._console = ConsoleBuffer(workdir / "console.log")
        self._debugger = GdbDebugger()
        self._programs: dict[str, ProgramInfo] = {}
        self._program: ProgramInfo | None = None
        self._snapshots: list[str] = []
        self._run: QemuRun | None = None
        self._runs = itertools.count(1)
        self._jobs = itertools.count(1)
        self._logs: list[tuple[Path, str | None]] = []  # execution logs, by program id
        self._lock = trio.Lock()  # one power transition at a time

    # --- identity ------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """This instance's id."""
        return self._id

    @property
    def workdir(self) -> Path:
        """Where its sockets, programs, logs and artefacts live."""
        return self._workdir

    @property
    def plan(self) -> QemuNodePlan:
        """The QEMU machine this instance runs."""
        return self._plan

    def capabilities(self) -> Capabilities:
        """What this instance can do (the board and the backend's settings decide)."""
        return self._capabilities

    @property
    def is_powered(self) -> bool:
        """Whether a QEMU process is running."""
        return self._run is not None and not self._run.exited.is_set()

    @property
    def qmp(self) -> QmpClient:
        """The running QEMU's QMP client (for what this interface does not cover)."""
        qmp = self._current().qmp
        assert qmp is not None
        return qmp

    @property
    def gdb(self) -> GdbClient:
        """The running QEMU's GDB client."""
        gdb = self._current().gdb
        assert gdb is not None
        return gdb

    def _current(self) -> QemuRun:
        run = self._run
        if run is None:
            raise BackendError(f"instance {self._id} is powered off", backend="qemu")
        if run.exited.is_set():
            raise run.failure()
        return run

    def _need(self, capability: Capability, doing: str) -> None:
        self._capabilities.require(capability, doing=doing)

    # --- power ---------------------------------------------------------------------------

    async def power_on(self) -> None:
        """Start QEMU, its CPU held before the first instruction (no-op if it runs)."""
        self._need(Capability.POWER, "power_on")
        async with self._lock:
            if not self.is_powered:
                await self._start()

    async def power_off(self) -> None:
        """Quit QEMU (QMP ``quit``, then SIGTERM, then SIGKILL) and wait until it is reaped."""
        self._need(Capability.POWER, "power_off")
        async with self._lock:
            await self._stop()

    async def reset(self) -> None:
        """Reset the machine (QMP ``system_reset``); a stopped CPU stays stopped."""
        self._need(Capability.POWER, "reset")
        await self.qmp.execute("system_reset")

    async def pause(self) -> None:
        """Stop the CPU (a GDB interrupt), keeping all state."""
        self._need(Capability.PAUSE, "pause")
        await self.gdb.interrupt()

    async def resume(self) -> None:
        """Let the CPU run (no-op if it runs)."""
        self._need(Capability.PAUSE, "resume")
        if not self.gdb.is_running:
            await self.gdb.continue_()

    async def _start(self) -> None:
        run_number = next(self._runs)
        argv = [self._binary(), *self._plan.args, "-accel", "tcg", "-nodefaults"]
        argv += ["-display", "none", "-no-user-config"]
        argv += snapshot_drive_args(self._workdir / "snapshots.qcow2")
        program = self._program
        if program is not None:
            argv += _program_args(program)
        if self._settings.trace:
            log = self._workdir / f"exec-{run_number}.log"
            argv += ["-d", "in_asm,exec,nochain", "-D", str(log)]
            self._logs.append((log, program.program_id if program else None))
        spec = RunSpec(
            tuple(argv),
            self._plan.console_index,
            self._workdir,
            self._workdir / "qemu.log",
            self._settings.connect_timeout,
            self._settings.call_timeout,
            self._settings.stop_grace,
        )
        self._run = await self._nursery.start(serve_run, spec, self._console, self._debugger.attach)

    async def _stop(self) -> None:
        run, self._run = self._run, None
        self._debugger.detach()
        if run is not None:
            run.stop.set()
            await run.exited.wait()

    def _binary(self) -> str:
        return self._settings.binaries.get(self._plan.binary, self._plan.binary)

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
        capability = (
            Capability.PROGRAM_ELF if format is ProgramFormat.ELF else Capability.PROGRAM_RAW
        )
        self._need(capability, f"upload_program(format={format.value!r})")
        if format is ProgramFormat.ELF and not data.startswith(b"\x7fELF"):
            raise ConfigError("upload_program: the data is not an ELF file (use format='raw')")
        program_id = f"prog{len(self._programs) + 1}"
        folder = self._workdir / "programs"
        folder.mkdir(exist_ok=True)
        path = folder / f"{program_id}.{'elf' if format is ProgramFormat.ELF else 'bin'}"
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

    async def start_program(self, program_id: str, options: StartOptions | None = None) -> None:
        """(Re)start QEMU with the program loaded, from reset or at ``options.entry``; the CPU
        runs unless ``options.halted``. Breakpoints already set apply from the first
        instruction."""
        program = self.program(program_id)
        options = options or StartOptions()
        if options.entry is not None:
            self._need(Capability.START_AT_ENTRY, "start_program(entry=...)")
        async with self._lock:
            await self._stop()
            self._program = program
            elf = program.path if program.format is ProgramFormat.ELF else None
            self._debugger.load_symbols(elf)
            await self._start()
        gdb = self.gdb
        if options.entry is not None:
            await gdb.write_register(GdbDebugger.pc_name(gdb), options.entry)
        if not options.halted:
            await gdb.continue_()

    def address_of(self, symbol: str) -> int:
        """The address of a function or variable of the running ELF."""
        return self._debugger.address_of(symbol)

    # --- debugging -----------------------------------------------------------------------

    async def set_breakpoint(self, breakpoint: Breakpoint) -> int | None:
        """Set a breakpoint (or watchpoint), now and after every restart; returns its address
        (None for a symbol while no program runs: it is resolved when one starts)."""
        capability = Capability.WATCHPOINTS if breakpoint.is_watchpoint else Capability.BREAKPOINTS
        self._need(capability, "set_breakpoint")
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
        """Let a stopped CPU run until a breakpoint, :meth:`pause` or forever."""
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
        await gdb.wait_stop(timeout)
        return await gdb.read_register(GdbDebugger.pc_name(gdb))

    # --- snapshots -----------------------------------------------------------------------

    async def create_snapshot(self) -> str:
        """Save the machine (CPU, memory, devices) in the instance's qcow2; returns its id."""
        self._need(Capability.SNAPSHOTS, "create_snapshot")
        tag = f"snap{len(self._snapshots) + 1}"
        await self._snapshot_job("snapshot-save", tag)
        self._snapshots.append(tag)
        return tag

    async def restore_snapshot(self, snapshot_id: str) -> None:
        """Put the machine back as :meth:`create_snapshot` saved it; a running CPU runs on."""
        self._need(Capability.SNAPSHOTS, "restore_snapshot")
        if snapshot_id not in self._snapshots:
            known = ", ".join(self._snapshots) or "none"
            raise ConfigError(f"no snapshot {snapshot_id!r} (snapshots: {known})")
        await self._snapshot_job("snapshot-load", snapshot_id)

    async def _snapshot_job(self, command: str, tag: str) -> None:
        # With the CPU stopped through GDB first, the save or load does not change the run
        # state behind the gdbstub's back (it would send a stop reply nobody asked for).
        gdb = self.gdb
        was_running = gdb.is_running
        if was_running:
            await gdb.interrupt()
        await run_snapshot_job(self.qmp, command, tag, f"{command}-{tag}-{next(self._jobs)}")
        if was_running:
            await gdb.continue_()

    # --- coverage and trace --------------------------------------------------------------

    def _trace_logs(self, program_id: str | None) -> list[Path]:
        return [path for path, pid in self._logs if pid == program_id and path.exists()]

    async def export_coverage(self, dest: Path | None = None) -> Artifact:
        """The running program's coverage (all its runs) as an lcov ``.info`` file."""
        self._need(Capability.COVERAGE, "export_coverage")
        program = self._program
        if program is None or program.format is not ProgramFormat.ELF:
            raise ConfigError("export_coverage needs a running ELF program (for its debug info)")
        logs = self._trace_logs(program.program_id)
        target = dest or self._workdir / f"coverage-{program.program_id}.info"

        def build() -> None:
            counts = parse_exec_logs(logs).instruction_counts()
            target.write_text(lcov(DebugInfo.from_elf(program.path), counts, test_name=self._id))

        await trio.to_thread.run_sync(build)
        return Artifact(target, "text/x-lcov", f"coverage of {program.name}")

    async def export_trace(self, dest: Path | None = None) -> Artifact:
        """QEMU's execution log (``in_asm,exec``) of every run so far, in one file."""
        self._need(Capability.TRACE, "export_trace")
        target = dest or self._workdir / "trace.log"
        logs = [path for path, _ in self._logs if path.exists()]

        def build() -> None:
            with target.open("wb") as out:
                for path in logs:
                    with path.open("rb") as log:
                        shutil.copyfileobj(log, out)

        await trio.to_thread.run_sync(build)
        return Artifact(target, "text/plain", "QEMU execution log (-d in_asm,exec,nochain)")

    # --- console -------------------------------------------------------------------------

    def console_output(self) -> bytes:
        """Everything the console UART wrote since the instance was created."""
        return self._console.output()

    async def wait_console(self, text: bytes, *, timeout: float | None = None) -> bytes:
        """Wait until the console output contains ``text``; returns all of it."""
        self._need(Capability.CONSOLE, "wait_console")
        limit = self._settings.call_timeout if timeout is None else timeout
        return await self._console.wait_for(text, timeout=limit)

    @property
    def console(self) -> ConsoleBuffer:
        """The console (subscribe to stream its output)."""
        return self._console


def _program_args(program: ProgramInfo) -> list[str]:
    if program.format is ProgramFormat.ELF:
        return ["-kernel", str(program.path)]
    return ["-device", f"loader,file={program.path},addr={program.load_address:#x},force-raw=on"]


@asynccontextmanager
async def open_qemu_instance(
    plan: QemuNodePlan,
    *,
    instance_id: str,
    workdir: Path,
    settings: QemuSettings,
    capabilities: Capabilities,
) -> AsyncIterator[QemuInstance]:
    """An instance of ``plan`` in ``workdir`` (created); on exit QEMU is stopped and reaped."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    await create_image(workdir / "snapshots.qcow2", qemu_img=settings.qemu_img)
    async with open_service_nursery() as nursery:
        instance = QemuInstance(plan, instance_id, workdir, settings, capabilities, nursery)
        try:
            yield instance
        finally:
            with trio.CancelScope(shield=True):
                await instance._stop()
            instance.console.close()
            nursery.cancel_scope.cancel()
