"""The SkyEye backend, written against SkyEye's documented interface and **untested against
the real SkyEye** (it is in no registry this project can reach); its tests use a faithful fake
(tests/engine/backends/fakes/skyeye).

``skyeye -d -e PROGRAM.elf -c skyeye.conf`` runs a program in GDB-server mode: SkyEye listens
for GDB on port 12345 (fixed: one SkyEye instance per machine at a time) and says so on its
output, which then carries the UART (``uart: mod=stdio``). The configuration file is generated
from the node: ``arch``/``cpu``/``mach`` from the processor and ``machine``, one ``mem_bank``
per memory region. Every program start is a new SkyEye process; reset restarts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from virtrio.channels import Address
from virtrio.channels.gdb import open_gdb
from virtrio.primitives import open_service_nursery

from ._board import Access, BoardConfigError, NodeConfig
from ._console import pump_console
from ._instance_base import GdbInstanceBase
from ._process import ExternalBackend, find_program, open_announcing_process, read_until
from ._types import (
    BackendStateError,
    BackendType,
    Capabilities,
    Capability,
    ProgramFormat,
    StartOptions,
)

__all__ = ["SkyEyeBackend", "SkyEyeInstance", "skyeye_config"]

GDB_PORT = 12345
_INSTALL = "build SkyEye from its sources (no package ships it) or set binary="
_ACCESS = {Access.RW: "RW", Access.RO: "R", Access.WO: "W"}


def skyeye_config(
    node: NodeConfig, *, raw: tuple[Path, int] | None = None, path: str = "$.nodes[0]"
) -> str:
    """The ``skyeye.conf`` for ``node`` (a raw image goes into the bank holding its address).

    Raises:
        BoardConfigError: each field SkyEye (or this adapter) cannot model.
    """
    errors: list[tuple[str, str]] = []
    cpu = node.processor
    arch = "arm" if cpu.type.startswith(("arm", "cortex", "strongarm", "xscale")) else None
    if arch is None:
        errors.append((f"{path}.processor.type", "this adapter generates ARM configurations only"))
    if not node.machine:
        errors.append((f"{path}.machine", "required: SkyEye's mach (s3c2410x, at91...)"))
    if cpu.cores != 1:
        errors.append((f"{path}.processor.cores", "SkyEye simulates one core"))
    if cpu.frequency is not None:
        errors.append((f"{path}.processor.frequency", "not settable in skyeye.conf"))
    if not node.memory:
        errors.append((f"{path}.memory", "SkyEye needs at least one mem_bank"))
    lines = [f"arch: {arch}", f"cpu: {cpu.type}", f"mach: {node.machine}"]
    placed = raw is None
    for region in node.memory:
        bank = (
            f"mem_bank: map=M, type={_ACCESS[region.access]}, "
            f"addr={region.address:#x}, size={region.size:#x}"
        )
        if raw is not None and region.address <= raw[1] < region.end:
            bank += f", file={raw[0]}, boot=yes"
            placed = True
        lines.append(bank)
    if not placed:
        errors.append(
            (f"{path}.memory", f"no region holds the load address {raw[1] if raw else 0:#x}")
        )
    uarts = [p for p in node.peripherals if p.type == "uart"]
    for index, peripheral in enumerate(node.peripherals):
        if peripheral.type != "uart" or peripheral is not uarts[0]:
            errors.append((f"{path}.peripherals[{index}]", "SkyEye's output carries one uart only"))
    if uarts:
        lines.append("uart: mod=stdio")
    for key in node.options:
        errors.append((f"{path}.options.{key}", "SkyEye nodes take no options"))
    if errors:
        raise BoardConfigError(errors)
    return "\n".join(lines) + "\n"


class SkyEyeInstance(GdbInstanceBase):
    """One SkyEye machine (a SkyEye process per program start)."""

    backend_name = "skyeye"

    def __init__(
        self,
        node: NodeConfig,
        instance_id: str,
        workdir: Path,
        backend: SkyEyeBackend,
        nursery: trio.Nursery,
    ) -> None:
        super().__init__(
            instance_id, workdir, backend.capabilities(node), call_timeout=backend.call_timeout
        )
        self._node = node
        self._backend = backend
        self._nursery = nursery
        self._run: trio.CancelScope | None = None
        self._exited = trio.Event()

    async def power_on(self) -> None:
        """Start SkyEye with the current program (SkyEye needs one to start).

        Raises:
            BackendStateError: no program has been started yet.
        """
        self._need(Capability.POWER, "power_on")
        if self._run is not None:
            return
        if self._program is None:
            raise BackendStateError(
                "SkyEye starts with a program: call start_program", backend="skyeye"
            )
        self._exited = trio.Event()
        self._run = await self._nursery.start(self._serve)

    async def power_off(self) -> None:
        """Stop SkyEye and wait until it is reaped."""
        self._need(Capability.POWER, "power_off")
        run, self._run = self._run, None
        self._debugger.detach()
        if run is not None:
            run.cancel()
            await self._exited.wait()

    async def reset(self) -> None:
        """Restart SkyEye with the same program (it has no reset over GDB)."""
        self._need(Capability.POWER, "reset")
        await self.power_off()
        await self.power_on()

    async def start_program(self, program_id: str, options: StartOptions | None = None) -> None:
        """Start SkyEye on the program; it runs unless ``options.halted``."""
        options = options or StartOptions()
        await self.power_off()
        self._select_program(program_id, options)
        await self.power_on()
        await self._run_from(options)

    async def _serve(self, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        backend, program = self._backend, self._program
        assert program is not None
        raw = (
            None
            if program.format is ProgramFormat.ELF
            else (program.path, program.load_address or 0)
        )
        conf = self._workdir / "skyeye.conf"
        await trio.Path(conf).write_text(skyeye_config(self._node, raw=raw))
        argv = [find_program(backend.binary, "skyeye", backend="skyeye", hint=_INSTALL), "-d"]
        if raw is None:
            argv += ["-e", str(program.path)]
        argv += ["-c", str(conf)]
        try:
            with trio.CancelScope() as scope:
                async with open_announcing_process(
                    argv, cwd=self._workdir, grace=backend.stop_grace, backend="skyeye"
                ) as process:
                    assert process.stdout is not None
                    _, rest = await read_until(
                        process.stdout, str(GDB_PORT).encode(), timeout=backend.connect_timeout,
                        what="SkyEye", backend="skyeye",
                    )  # fmt: skip
                    self._console.feed(rest)
                    async with open_service_nursery() as nursery:
                        nursery.start_soon(pump_console, process.stdout, self._console)
                        async with open_gdb(
                            Address.tcp("127.0.0.1", GDB_PORT),
                            connect_timeout=backend.connect_timeout,
                            call_timeout=backend.call_timeout,
                        ) as gdb:
                            await self._debugger.attach(gdb)
                            task_status.started(scope)
                            await process.wait()
                            nursery.cancel_scope.cancel()
        finally:
            self._debugger.detach()
            self._exited.set()


class SkyEyeBackend(ExternalBackend[SkyEyeInstance]):
    """SkyEye (registered as ``skyeye``). ``binary`` overrides ``skyeye`` on PATH."""

    name = BackendType.SKYEYE.value
    program = "skyeye"
    install_hint = _INSTALL

    def capabilities(self, node: NodeConfig | None = None) -> Capabilities:
        """What the adapter does (all of it untested against the real SkyEye)."""
        none = "SkyEye's GDB server and command line offer no way to do this"
        lacks = {
            Capability.WATCHPOINTS: "SkyEye's GDB server is not documented to support Z2-Z4",
            Capability.SNAPSHOTS: none,
            Capability.COVERAGE: none,
            Capability.TRACE: none,
        }
        summary = (
            "SkyEye: untested against the real SkyEye (tested against a fake of it); "
            f"GDB on the fixed port {GDB_PORT}, so one SkyEye instance at a time; "
            "power_on needs a started program and reset restarts SkyEye"
        )
        uart = None if node is None else any(p.type == "uart" for p in node.peripherals)
        return self._capabilities(lacks, summary, has_uart=uart)

    def check_node(self, node: NodeConfig) -> None:
        """Raise :class:`BoardConfigError` naming what this adapter cannot model."""
        skyeye_config(node)

    @asynccontextmanager
    async def _open(
        self, node: NodeConfig, instance_id: str, workdir: Path
    ) -> AsyncIterator[SkyEyeInstance]:
        await self._prepare(node, workdir)  # SkyEye itself starts with the first program
        async with open_service_nursery() as nursery:
            instance = SkyEyeInstance(node, instance_id, workdir, self, nursery)
            try:
                yield instance
            finally:
                with trio.CancelScope(shield=True):
                    await instance.power_off()
                instance.console.close()
                nursery.cancel_scope.cancel()
