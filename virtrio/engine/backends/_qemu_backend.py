"""The QEMU backend: what it can do per board, and its instances."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from ._board import NodeConfig
from ._limits import ResourceLimits
from ._qemu_board import QEMU_MACHINES, plan_qemu_node
from ._qemu_instance import QemuInstance, QemuSettings, open_qemu_instance
from ._types import BackendType, Capabilities, Capability

__all__ = ["QemuBackend"]

_TRACE_OFF = "the backend was created without trace=True (the execution log is off)"


class QemuBackend:
    """QEMU 7.2 under TCG (registered as ``qemu``). Settings are those of
    :class:`~virtrio.engine.backends.QemuSettings` (``trace=True`` for coverage and trace)."""

    name = BackendType.QEMU.value

    def __init__(self, **settings: Any) -> None:
        self.settings = QemuSettings(**settings)

    def capabilities(self, node: NodeConfig | None = None) -> Capabilities:
        """Everything but what the board (or the trace setting) rules out."""
        caps = Capabilities(
            self.name,
            frozenset(Capability),
            {
                Capability.COVERAGE: "per-instruction from QEMU's exec log; lines and "
                "functions from the ELF's DWARF",
                Capability.PROGRAM_RAW: "loaded with QEMU's generic loader at load_address",
            },
            tested=True,
            summary="QEMU (TCG); tested end to end against qemu-system-arm and -x86_64 7.2",
        )
        if not self.settings.trace:
            caps = caps.without(Capability.COVERAGE, _TRACE_OFF).without(
                Capability.TRACE, _TRACE_OFF
            )
        if node is not None:
            model = QEMU_MACHINES.get(node.machine or "")
            if model is not None and model.snapshot_problem:
                caps = caps.without(Capability.SNAPSHOTS, model.snapshot_problem)
            if model is None or model.display is None:
                machine = node.machine or "this board"
                caps = caps.without(
                    Capability.DISPLAY, f"QEMU's {machine} has no display to take a picture of"
                )
        return caps

    def check_node(self, node: NodeConfig) -> None:
        """Raise :class:`BoardConfigError` naming what QEMU cannot model in ``node``."""
        plan_qemu_node(node)

    def open_instance(
        self,
        node: NodeConfig,
        *,
        instance_id: str,
        workdir: Path,
        limits: ResourceLimits | None = None,
    ) -> AbstractAsyncContextManager[QemuInstance]:
        """An instance of ``node``: QEMU runs from :meth:`QemuInstance.power_on` on, under
        ``limits`` if given (memory and CPU share in a cgroup, CPU seconds per run).

        Raises:
            BoardConfigError: QEMU cannot model the node.
        """
        return open_qemu_instance(
            plan_qemu_node(node),
            instance_id=instance_id,
            workdir=workdir,
            settings=self.settings,
            capabilities=self.capabilities(node),
            limits=limits,
        )
