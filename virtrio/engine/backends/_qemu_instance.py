"""The QEMU backend's instance: a QEMU process (restarted on power cycles and program
starts) owned by the instance's nursery, with QMP, the gdbstub and the console on Unix sockets
in its work directory.

Power goes through QMP (``system_reset``, ``quit``) and the process; run control, breakpoints,
registers and memory through the GDB client; snapshots through QMP jobs (see ``_snapshots``);
coverage and trace from QEMU's execution log when the backend has ``trace=True``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from virtrio.channels.gdb import GdbClient
from virtrio.channels.qmp import QmpClient
from virtrio.errors import ConfigError
from virtrio.primitives import open_service_nursery

from ._coverage import DebugInfo, lcov, parse_exec_logs
from ._instance_base import GdbInstanceBase
from ._limits import AppliedLimits, ResourceLimitExceededError, ResourceLimits
from ._qemu_board import QemuNodePlan
from ._qemu_run import QemuRun, RunSpec, serve_run
from ._snapshots import create_image, run_snapshot_job, snapshot_drive_args
from ._types import (
    Artifact,
    BackendStartError,
    BackendStateError,
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
    turns on the execution log that coverage and trace need (it slows the guest down);
    ``extra_args`` go at the end of every QEMU command line.
    """

    binaries: dict[str, str] = attrs.field(factory=dict)
    trace: bool = False
    connect_timeout: float = 10.0
    call_timeout: float = 10.0
    stop_grace: float = 3.0
    qemu_img: str = "qemu-img"
    extra_args: tuple[str, ...] = ()


class QemuInstance(GdbInstanceBase):
    """One QEMU machine. Made by :func:`open_qemu_instance` (or an adapter)."""

    backend_name = "qemu"

    def __init__(
        self,
        plan: QemuNodePlan,
        instance_id: str,
        workdir: Path,
        settings: QemuSettings,
        capabilities: Capabilities,
        nursery: trio.Nursery,
        limits: AppliedLimits | None = None,
    ) -> None:
        super().__init__(instance_id, workdir, capabilities, call_timeout=settings.call_timeout)
        self._limits = limits
        self._limit_error: ResourceLimitExceededError | None = None
        self._limit_hit = trio.Event()
        self._plan = plan
        self._settings = settings
        self._nursery = nursery
        self._snapshots: list[str] = []
        self._run: QemuRun | None = None
        self._spec: RunSpec | None = None
        self._runs = itertools.count(1)
        self._jobs = itertools.count(1)
        self._logs: list[tuple[Path, str | None]] = []  # execution logs, by program id
        self._lock = trio.Lock()  # one power transition at a time

    @property
    def plan(self) -> QemuNodePlan:
        """The QEMU machine this instance runs."""
        return self._plan

    @property
    def run_spec(self) -> RunSpec | None:
        """How the current (or last) QEMU was started: its arguments less the sockets."""
        return self._spec

    @property
    def limits(self) -> AppliedLimits | None:
        """The resource limits applied to this instance's QEMU (None: none)."""
        return self._limits

    @property
    def pid(self) -> int | None:
        """The running QEMU's process id (None while powered off)."""
        return self._run.process.pid if self.is_powered and self._run is not None else None

    async def wait_limit_exceeded(self) -> ResourceLimitExceededError:
        """Wait until a resource limit kills this instance's QEMU; returns why."""
        await self._limit_hit.wait()
        assert self._limit_error is not None
        return self._limit_error

    def _note_limit(self, error: ResourceLimitExceededError | None) -> None:
        if error is not None and self._limit_error is None:
            self._limit_error = error
            self._limit_hit.set()

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
        """The running QEMU's GDB client.

        Raises:
            BackendStateError: the instance is powered off.
            BackendExitedError: QEMU exited (with the end of its log).
        """
        gdb = self._current().gdb
        assert gdb is not None
        return gdb

    def _current(self) -> QemuRun:
        run = self._run
        if run is None:
            raise BackendStateError(f"instance {self._id} is powered off", backend="qemu")
        if run.exited.is_set():
            raise run.failure()
        return run

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
        argv += self._settings.extra_args
        spec = RunSpec(
            tuple(argv),
            self._plan.console_index,
            self._workdir,
            self._workdir / "qemu.log",
            self._settings.connect_timeout,
            self._settings.call_timeout,
            self._settings.stop_grace,
            limits=self._limits,
        )
        self._spec = spec
        try:
            run = await self._nursery.start(serve_run, spec, self._console, self._debugger.attach)
        except ResourceLimitExceededError as exc:
            self._note_limit(exc)
            raise
        self._run = run
        self._nursery.start_soon(self._watch_limit, run)

    async def _watch_limit(self, run: QemuRun) -> None:
        await run.exited.wait()
        self._note_limit(run.limit_error)

    async def _stop(self) -> None:
        run, self._run = self._run, None
        self._debugger.detach()
        if run is not None:
            run.stop.set()
            await run.exited.wait()

    def _binary(self) -> str:
        return self._settings.binaries.get(self._plan.binary, self._plan.binary)

    async def write_console(self, data: bytes) -> None:
        """Send ``data`` to the console UART (input, as if typed on its terminal).

        Raises:
            BackendStateError: QEMU is powered off.
            BackendExitedError: QEMU exited.
        """
        self._need(Capability.CONSOLE, "write_console")
        await self._current().write_console(data)

    # --- programs ------------------------------------------------------------------------

    async def start_program(self, program_id: str, options: StartOptions | None = None) -> None:
        """(Re)start QEMU with the program loaded, from reset or at ``options.entry``; the CPU
        runs unless ``options.halted``. Breakpoints already set apply from the first
        instruction."""
        options = options or StartOptions()
        async with self._lock:
            await self._stop()
            self._select_program(program_id, options)
            await self._start()
        await self._run_from(options)

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

    # --- display -------------------------------------------------------------------------

    async def screenshot(self) -> bytes:
        """The board's display now, as a PNG (QMP ``screendump``; the CPU may run).

        Raises:
            UnsupportedCapabilityError: the board has no display.
            BackendStateError: the instance is powered off.
        """
        self._need(Capability.DISPLAY, "screenshot")
        target = self._workdir / f"screen-{next(self._jobs)}.png"
        await self.qmp.execute("screendump", {"filename": str(target), "format": "png"})
        path = trio.Path(target)
        try:
            return await path.read_bytes()
        finally:
            await path.unlink(missing_ok=True)

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
    limits: ResourceLimits | None = None,
) -> AsyncIterator[QemuInstance]:
    """An instance of ``plan`` in ``workdir`` (created); on exit QEMU is stopped and reaped.
    ``limits`` apply to every QEMU it runs (see ``_limits``).

    Raises:
        BackendStartError: the limits need a cgroup and none is writable here.
    """
    workdir = Path(workdir)
    await trio.Path(workdir).mkdir(parents=True, exist_ok=True)
    await create_image(workdir / "snapshots.qcow2", qemu_img=settings.qemu_img)
    applied = None
    if limits is not None:
        applied = AppliedLimits(limits, f"{instance_id}-{os.getpid()}", backend="qemu")
        try:
            applied.create()
        except OSError as exc:
            applied.close()
            raise BackendStartError(f"cannot apply {limits}: {exc}", backend="qemu") from None
    try:
        async with open_service_nursery() as nursery:
            instance = QemuInstance(
                plan, instance_id, workdir, settings, capabilities, nursery, applied
            )
            try:
                yield instance
            finally:
                with trio.CancelScope(shield=True):
                    await instance._stop()
                instance.console.close()
                nursery.cancel_scope.cancel()
    finally:
        if applied is not None:
            applied.close()
