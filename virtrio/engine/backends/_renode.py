"""The Renode backend, written against Renode's documented interfaces and **untested against
the real Renode** (it is in no registry this project can reach); its tests use a faithful fake
of those interfaces (tests/engine/backends/fakes/renode).

* ``renode --disable-xwt --robot-server-port N`` serves Robot Framework's remote-library
  protocol (XML-RPC ``run_keyword(name, args)`` answering ``{status, return, error, ...}``) and
  says ``Robot Framework remote server is listening on port N`` when it is ready.
* Keywords: ``ExecuteCommand`` (a monitor command), ``StartEmulation``, ``ResetEmulation``.
* Monitor commands: ``mach create``, ``machine LoadPlatformDescription @FILE``,
  ``emulation CreateServerSocketTerminal PORT NAME false`` + ``connector Connect sysbus.UART
  NAME`` (the console on a TCP socket), ``sysbus LoadELF @FILE`` / ``sysbus LoadBinary @FILE
  ADDR``, ``cpu PC ADDR``, ``machine StartGdbServer PORT`` (debugging through the GDB client),
  ``machine Reset``.

A node either names a platform file (``machine: "platforms/cpus/stm32f4.repl"``, whose memory
map it then must not restate) or is turned into one: a Cortex-M CPU with an NVIC, one
``Memory.MappedMemory`` per region, one peripheral per entry with its Renode model in
``options.model``. Every program start re-creates the machine (``ResetEmulation`` first).
"""

from __future__ import annotations

import contextlib
import xmlrpc.client
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from virtrio.channels import Address, open_stream
from virtrio.channels.gdb import open_gdb
from virtrio.primitives import open_service_nursery

from ._board import Access, BoardConfigError, NodeConfig
from ._console import pump_console
from ._instance_base import GdbInstanceBase
from ._process import (
    ExternalBackend,
    free_tcp_port,
    open_announcing_process,
    read_until,
)
from ._types import (
    BackendCommandError,
    BackendType,
    Capabilities,
    Capability,
    ProgramFormat,
    StartOptions,
)

__all__ = ["RenodeBackend", "RenodeInstance", "RobotRemote", "renode_platform"]

_INSTALL = "install Renode (https://renode.io: its .deb or portable build) or set binary="
_READY = b"Robot Framework remote server is listening on port"
_UNTESTED = "untested against the real Renode (tested against a fake of its interfaces)"


def renode_platform(node: NodeConfig, *, path: str = "$.nodes[0]") -> tuple[str | None, str]:
    """The node as Renode sees it: (a platform file to load, or None) and the ``.repl`` text
    to write when there is no file; the console UART is the first ``uart`` peripheral (or
    ``options.console``, a ``sysbus.NAME``).

    Raises:
        BoardConfigError: each field Renode (or this adapter) cannot model.
    """
    errors: list[tuple[str, str]] = []
    if node.machine:
        if not node.machine.endswith(".repl"):
            errors.append((f"{path}.machine", "Renode takes a platform description file (.repl)"))
        if node.memory or node.peripherals:
            field = "memory" if node.memory else "peripherals"
            errors.append((f"{path}.{field}", "the platform file defines this; leave it out"))
        if errors:
            raise BoardConfigError(errors)
        return node.machine, ""
    cpu = node.processor
    if not cpu.type.startswith("cortex-m"):
        errors.append((f"{path}.processor.type", "only Cortex-M nodes can be generated for Renode"))
    if cpu.cores != 1:
        errors.append((f"{path}.processor.cores", "a generated Renode platform has one core"))
    if cpu.frequency is not None:
        errors.append((f"{path}.processor.frequency", "not settable in a generated platform"))
    lines = [
        "nvic: IRQControllers.NVIC @ sysbus 0xE000E000",
        "    -> cpu@0",
        "cpu: CPU.CortexM @ sysbus",
        f'    cpuType: "{cpu.type}"',
        "    nvic: nvic",
    ]
    for index, region in enumerate(node.memory):
        if region.access is not Access.RW:
            errors.append((f"{path}.memory[{index}].access", "Renode's MappedMemory is RW"))
        lines += [
            f"{region.name or f'mem{index}'}: Memory.MappedMemory @ sysbus {region.address:#x}",
            f"    size: {region.size:#x}",
        ]
    for index, peripheral in enumerate(node.peripherals):
        at = f"{path}.peripherals[{index}]"
        model = peripheral.options.get("model")
        unknown = set(peripheral.options) - {"model", "console"}
        if not isinstance(model, str):
            errors.append((f"{at}.options.model", "required: the Renode model (UART.PL011...)"))
        if peripheral.address is None:
            errors.append((f"{at}.address", "required for a generated Renode platform"))
        for key in sorted(unknown):
            errors.append((f"{at}.options.{key}", "unknown option (model, console)"))
        lines.append(f"{peripheral.name}: {model} @ sysbus {peripheral.address or 0:#x}")
        if peripheral.irq is not None:
            lines.append(f"    -> nvic@{peripheral.irq}")
    for key in node.options:
        if key != "console":
            errors.append((f"{path}.options.{key}", "the only Renode node option is console"))
    if errors:
        raise BoardConfigError(errors)
    return None, "\n".join(lines) + "\n"


def _console_uart(node: NodeConfig) -> str | None:
    console = node.options.get("console")
    if isinstance(console, str):
        return console
    for peripheral in node.peripherals:
        if peripheral.type == "uart" and peripheral.options.get("console", True):
            return f"sysbus.{peripheral.name}"
    return None


class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> Any:
        connection = super().make_connection(host)
        connection.timeout = self._timeout
        return connection


class RobotRemote:
    """A Robot Framework remote-library client (XML-RPC; each call in a worker thread, one at
    a time, abandoned if cancelled)."""

    def __init__(self, port: int, *, timeout: float) -> None:
        self._proxy = xmlrpc.client.ServerProxy(
            f"http://127.0.0.1:{port}/", transport=_Transport(timeout), allow_none=True
        )
        self._limiter = trio.CapacityLimiter(1)

    async def run_keyword(self, name: str, *args: str) -> Any:
        """Run a keyword; returns its ``return`` value.

        Raises:
            BackendCommandError: the keyword failed (Renode's error text), or the call did.
        """

        def call() -> Any:
            return self._proxy.run_keyword(name, list(args))

        try:
            result = await trio.to_thread.run_sync(
                call, limiter=self._limiter, abandon_on_cancel=True
            )
        except (OSError, xmlrpc.client.Error) as exc:
            raise BackendCommandError(f"{name} {list(args)}: {exc}", backend="renode") from None
        if not isinstance(result, dict) or result.get("status") != "PASS":
            error = result.get("error", result) if isinstance(result, dict) else result
            raise BackendCommandError(f"{name} {list(args)} failed: {error}", backend="renode")
        return result.get("return")

    async def execute(self, command: str) -> str:
        """A monitor command (``ExecuteCommand``); returns its output."""
        return str(await self.run_keyword("ExecuteCommand", command) or "")


class RenodeInstance(GdbInstanceBase):
    """One Renode machine in its own Renode process."""

    backend_name = "renode"

    def __init__(
        self, node: NodeConfig, instance_id: str, workdir: Path, backend: RenodeBackend
    ) -> None:
        super().__init__(
            instance_id, workdir, backend.capabilities(node), call_timeout=backend.call_timeout
        )
        self._node = node
        self._backend = backend
        self._remote: RobotRemote | None = None
        self._nursery: trio.Nursery | None = None
        self._connections: trio.CancelScope | None = None
        self._powered = False

    @property
    def remote(self) -> RobotRemote:
        """The Robot remote client of this instance's Renode."""
        assert self._remote is not None
        return self._remote

    async def power_on(self) -> None:
        """Create the machine (its platform and console); it runs once a program starts."""
        self._need(Capability.POWER, "power_on")
        if self._powered:
            return
        remote = self.remote
        platform, repl = renode_platform(self._node)
        if platform is None:
            path = self._workdir / "platform.repl"
            await trio.Path(path).write_text(repl)
            platform = str(path)
        await remote.execute(f'mach create "{self._id}"')
        await remote.execute(f"machine LoadPlatformDescription @{platform}")
        uart = _console_uart(self._node)
        if uart is not None:
            self._console_port = free_tcp_port()
            await remote.execute(
                f'emulation CreateServerSocketTerminal {self._console_port} "console" false'
            )
            await remote.execute(f"connector Connect {uart} console")
        self._powered = True

    async def power_off(self) -> None:
        """Clear the emulation (``ResetEmulation``): machine, console and GDB server go."""
        self._need(Capability.POWER, "power_off")
        self._disconnect()
        await self.remote.run_keyword("ResetEmulation")
        self._powered = False

    async def reset(self) -> None:
        """Reset the machine (``machine Reset``)."""
        self._need(Capability.POWER, "reset")
        await self.remote.execute("machine Reset")

    def _disconnect(self) -> None:
        if self._connections is not None:
            self._connections.cancel()
            self._connections = None
        self._debugger.detach()

    async def start_program(self, program_id: str, options: StartOptions | None = None) -> None:
        """Re-create the machine, load the program, start the GDB server and the emulation."""
        options = options or StartOptions()
        program = self._select_program(program_id, options)
        if self._powered:
            await self.power_off()
        await self.power_on()
        remote = self.remote
        if program.format is ProgramFormat.ELF:
            await remote.execute(f"sysbus LoadELF @{program.path}")
        else:
            await remote.execute(f"sysbus LoadBinary @{program.path} {program.load_address:#x}")
        gdb_port = free_tcp_port()
        await remote.execute(f"machine StartGdbServer {gdb_port}")
        assert self._nursery is not None
        await self._nursery.start(self._connect, gdb_port)
        await remote.run_keyword("StartEmulation")
        await self._run_from(options)

    async def _connect(self, gdb_port: int, *, task_status: trio.TaskStatus[None]) -> None:
        backend = self._backend
        with trio.CancelScope() as scope:
            self._connections = scope
            async with open_service_nursery() as nursery:
                if getattr(self, "_console_port", None):
                    stream = await open_stream(
                        Address.tcp("127.0.0.1", self._console_port),
                        connect_timeout=backend.connect_timeout,
                    )
                    nursery.start_soon(pump_console, stream, self._console)
                async with open_gdb(
                    Address.tcp("127.0.0.1", gdb_port),
                    connect_timeout=backend.connect_timeout,
                    call_timeout=backend.call_timeout,
                ) as gdb:
                    await self._debugger.attach(gdb)
                    task_status.started()
                    await trio.sleep_forever()


class RenodeBackend(ExternalBackend[RenodeInstance]):
    """Renode (registered as ``renode``). ``binary`` overrides ``renode`` on PATH."""

    name = BackendType.RENODE.value
    program = "renode"
    install_hint = _INSTALL

    def capabilities(self, node: NodeConfig | None = None) -> Capabilities:
        """What the adapter does (all of it untested against the real Renode)."""
        missing = "not implemented in virtrio's Renode adapter yet"
        lacks = {
            Capability.SNAPSHOTS: f"{missing} (Renode's Save/Load re-create the emulation)",
            Capability.COVERAGE: f"{missing} (Renode's CreateExecutionTracing could feed it)",
            Capability.TRACE: missing,
        }
        uart = None if node is None else _console_uart(node) is not None
        return self._capabilities(lacks, f"Renode: {_UNTESTED}", has_uart=uart)

    def check_node(self, node: NodeConfig) -> None:
        """Raise :class:`BoardConfigError` naming what this adapter cannot model."""
        renode_platform(node)

    @asynccontextmanager
    async def _open(
        self, node: NodeConfig, instance_id: str, workdir: Path
    ) -> AsyncIterator[RenodeInstance]:
        binary = await self._prepare(node, workdir)
        port = free_tcp_port()
        argv = [binary, "--disable-xwt", "--robot-server-port", str(port)]
        async with open_announcing_process(
            argv, cwd=workdir, grace=self.stop_grace, backend=self.name
        ) as process:
            assert process.stdout is not None
            await read_until(
                process.stdout,
                _READY,
                timeout=self.connect_timeout,
                what="Renode",
                backend=self.name,
            )
            instance = RenodeInstance(node, instance_id, workdir, self)
            instance._remote = RobotRemote(port, timeout=self.call_timeout)
            async with open_service_nursery() as nursery:
                instance._nursery = nursery
                nursery.start_soon(_drain, process.stdout, workdir / "renode.log")
                try:
                    yield instance
                finally:
                    instance._disconnect()
                    with trio.move_on_after(self.stop_grace) as scope:
                        scope.shield = True
                        # quit closes the connection under its reply
                        with contextlib.suppress(BackendCommandError):
                            await instance.remote.execute("quit")
                    instance.console.close()
                    nursery.cancel_scope.cancel()


async def _drain(stream: trio.abc.ReceiveStream, log: Path) -> None:
    with log.open("ab") as out:
        while data := await stream.receive_some(65536):
            out.write(data)
            out.flush()
