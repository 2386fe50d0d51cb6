"""The backend interface of seed 002 §2.3, in Trio's shape.

Three layers, each a :class:`typing.Protocol`:

* :class:`BackendInstance` — one emulated machine: power, programs, debugging, snapshots,
  coverage. An instance is an async context manager's value; leaving the block stops the
  emulator and reaps it, also on cancellation.
* :class:`Backend` — a kind of emulator (what the entry-point group ``virtrio.backends`` names):
  its type, its capabilities for a board, and :meth:`Backend.open_instance`.
* :class:`BackendAdapter` — the seed's interface, addressed by instance id, owning its instances
  in its own nursery: :func:`open_adapter` builds one on any :class:`Backend`.

::

    backend = load_backend("qemu")
    async with open_adapter(backend, workdir) as adapter:
        iid = await adapter.create_instance(node, session_id="s1")
        await adapter.power_on(iid)
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import trio

from virtrio.errors import ConfigError
from virtrio.primitives import open_service_nursery

from ._board import NodeConfig
from ._types import Artifact, Breakpoint, Capabilities, ProgramFormat, StartOptions

__all__ = ["Backend", "BackendAdapter", "BackendInstance", "InstanceAdapter", "open_adapter"]


@runtime_checkable
class BackendInstance(Protocol):
    """One emulated machine. Every method first checks :meth:`capabilities` and raises
    :class:`~virtrio.engine.backends.UnsupportedCapabilityError` naming the capability it
    lacks; every wait takes ``timeout=None`` meaning the instance's default."""

    @property
    def instance_id(self) -> str:
        """This instance's id (unique within its backend)."""

    @property
    def workdir(self) -> Path:
        """Where its sockets, programs, logs and artefacts live."""

    def capabilities(self) -> Capabilities:
        """What this instance (this backend on this board) can do."""

    async def power_on(self) -> None:
        """Start the machine (held before its first instruction until a program starts)."""

    async def power_off(self) -> None:
        """Stop the machine (the emulator process ends); :meth:`power_on` starts it again."""

    async def reset(self) -> None:
        """Reset the machine as its reset line would."""

    async def pause(self) -> None:
        """Stop executing instructions, keeping all state."""

    async def resume(self) -> None:
        """Execute again after :meth:`pause` or a stop."""

    async def upload_program(
        self,
        data: bytes,
        *,
        format: ProgramFormat = ProgramFormat.ELF,
        load_address: int | None = None,
        name: str = "",
    ) -> str:
        """Store a program in the instance's work directory; returns its program id."""

    async def start_program(self, program_id: str, options: StartOptions | None = None) -> None:
        """Load the program and run it from reset, or at ``options.entry``."""

    async def set_breakpoint(self, breakpoint: Breakpoint) -> int | None:
        """Set a breakpoint or watchpoint; returns the address it was set at (None for a
        symbol before any program runs: it is resolved when one starts)."""

    async def remove_breakpoint(self, breakpoint: Breakpoint) -> None:
        """Remove a breakpoint set by :meth:`set_breakpoint`."""

    async def read_registers(self, scope: Iterable[str] | None = None) -> dict[str, int]:
        """The CPU's registers by name (all, or only those in ``scope``)."""

    async def read_memory(self, address: int, size: int) -> bytes:
        """``size`` bytes of guest memory from ``address``."""

    async def continue_(self) -> None:
        """Let a stopped CPU run (see :meth:`wait_stop`)."""

    async def step(self) -> int:
        """Execute one instruction; returns the new program counter."""

    async def wait_stop(self, *, timeout: float | None = None) -> int:
        """Wait until the CPU stops (a breakpoint, a step); returns the program counter."""

    async def create_snapshot(self) -> str:
        """Save the whole machine state; returns a snapshot id."""

    async def restore_snapshot(self, snapshot_id: str) -> None:
        """Put the machine back in a saved state."""

    async def export_coverage(self, dest: Path | None = None) -> Artifact:
        """Write the coverage of what ran so far (lcov ``.info``)."""

    async def export_trace(self, dest: Path | None = None) -> Artifact:
        """Write the execution trace so far."""

    async def screenshot(self) -> bytes:
        """The board's display as a PNG (needs :attr:`Capability.DISPLAY`)."""

    def console_output(self) -> bytes:
        """Everything the first UART has written since the instance was created."""

    async def wait_console(self, text: bytes, *, timeout: float | None = None) -> bytes:
        """Wait until the console output contains ``text``; returns all output so far."""

    async def write_console(self, data: bytes) -> None:
        """Send ``data`` to the first UART, as if typed on its terminal."""


class Backend(Protocol):
    """A kind of emulator, registered by name under the entry-point group ``virtrio.backends``."""

    @property
    def name(self) -> str:
        """The backend's registered name (``qemu``)."""

    def capabilities(self, node: NodeConfig | None = None) -> Capabilities:
        """What this backend can do, on the given board node if any."""

    def check_node(self, node: NodeConfig) -> None:
        """Raise :class:`~virtrio.engine.backends.BoardConfigError` naming the first field of
        ``node`` this backend cannot model."""

    def open_instance(
        self, node: NodeConfig, *, instance_id: str, workdir: Path
    ) -> AbstractAsyncContextManager[BackendInstance]:
        """An instance of ``node`` in ``workdir``; leaving the context destroys it."""


class BackendAdapter(Protocol):
    """The seed's adapter: instances addressed by id, owned by the adapter."""

    @property
    def backend(self) -> Backend:
        """The backend this adapter drives."""

    def backend_type(self) -> str:
        """The backend's name."""

    def capabilities(self, instance_id: str | None = None) -> Capabilities:
        """The backend's capabilities, or one instance's (its board decides)."""

    async def create_instance(self, node: NodeConfig, *, session_id: str = "") -> str:
        """Create an instance of ``node``; returns its id."""

    async def destroy_instance(self, instance_id: str) -> None:
        """Stop and remove an instance."""

    def instance(self, instance_id: str) -> BackendInstance:
        """The instance with this id (every per-instance operation is a method of it)."""


class InstanceAdapter:
    """:class:`BackendAdapter` on any :class:`Backend`: each instance runs in a task of the
    adapter's nursery for as long as it exists. Made by :func:`open_adapter`."""

    def __init__(self, backend: Backend, workdir: Path, nursery: trio.Nursery) -> None:
        self._backend = backend
        self._workdir = workdir
        self._nursery = nursery
        # id -> (instance, set to destroy it, set once its emulator is reaped)
        self._instances: dict[str, tuple[BackendInstance, trio.Event, trio.Event]] = {}
        self._ids = itertools.count(1)

    @property
    def backend(self) -> Backend:
        """The backend this adapter drives."""
        return self._backend

    def backend_type(self) -> str:
        """The backend's name."""
        return self._backend.name

    def capabilities(self, instance_id: str | None = None) -> Capabilities:
        """The backend's capabilities, or one instance's."""
        if instance_id is None:
            return self._backend.capabilities()
        return self.instance(instance_id).capabilities()

    async def create_instance(self, node: NodeConfig, *, session_id: str = "") -> str:
        """Create an instance of ``node`` (in ``workdir/<id>``); returns its id.

        Raises:
            BoardConfigError: the backend cannot model the node.
        """
        self._backend.check_node(node)
        prefix = f"{session_id}-" if session_id else ""
        instance_id = f"{prefix}{node.id}-{next(self._ids)}"
        workdir = self._workdir / instance_id
        instance: BackendInstance = await self._nursery.start(self._run, node, instance_id, workdir)
        return instance.instance_id

    async def _run(
        self,
        node: NodeConfig,
        instance_id: str,
        workdir: Path,
        *,
        task_status: trio.TaskStatus[BackendInstance] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        done, gone = trio.Event(), trio.Event()
        try:
            async with self._backend.open_instance(
                node, instance_id=instance_id, workdir=workdir
            ) as instance:
                self._instances[instance_id] = (instance, done, gone)
                task_status.started(instance)
                await done.wait()
        finally:
            self._instances.pop(instance_id, None)
            gone.set()

    async def destroy_instance(self, instance_id: str) -> None:
        """Stop an instance and wait until its emulator is reaped.

        Raises:
            ConfigError: no instance has this id.
        """
        self.instance(instance_id)
        _, done, gone = self._instances[instance_id]
        done.set()
        await gone.wait()

    def instance(self, instance_id: str) -> BackendInstance:
        """The instance with this id.

        Raises:
            ConfigError: no instance has this id.
        """
        try:
            return self._instances[instance_id][0]
        except KeyError:
            known = ", ".join(sorted(self._instances)) or "none"
            raise ConfigError(f"no instance {instance_id!r} (instances: {known})") from None

    @property
    def instance_ids(self) -> list[str]:
        """The ids of the instances that exist now."""
        return sorted(self._instances)


@asynccontextmanager
async def open_adapter(backend: Backend, workdir: Path) -> AsyncIterator[InstanceAdapter]:
    """An adapter owning its instances; leaving it destroys every instance left."""
    async with open_service_nursery() as nursery:
        adapter = InstanceAdapter(backend, Path(workdir), nursery)
        try:
            yield adapter
        finally:
            nursery.cancel_scope.cancel()
