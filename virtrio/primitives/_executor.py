"""The one interface of everything that runs a JSON command and returns its result."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor"]


@runtime_checkable
class Executor(Protocol):
    """Runs ``command`` with ``arguments`` and returns the peer's result.

    The QMP and guest-agent socket clients, their libvirt counterparts
    (``qemuMonitorCommand``/``qemuAgentCommand``) and the supervised VM handles all are
    executors; the typed helpers (:class:`~virtrio.channels.qmp.QmpCommands`,
    :class:`~virtrio.channels.qga.QgaCommands`) are written once against this protocol.
    """

    @abc.abstractmethod
    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` and return its ``return`` value.

        Args:
            timeout: seconds the call may take (None: the executor's default call timeout;
                ``math.inf`` for none). A supervised handle counts its wait for a reconnect in.

        Raises:
            CommandError: the peer answered with an error (its class and description).
            ConnectionLostError: the connection went away before the reply (the command may
                or may not have run; it is not retried).
            VirtrioTimeoutError: no reply in time (:class:`~virtrio.errors.
                ChannelUnavailableError` when a supervised channel stayed down).
        """
