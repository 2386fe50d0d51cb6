"""QMP commands with typed results, on top of any client that can ``execute``.

:class:`QmpCommands` is the interface every QMP client in virtrio offers, whatever carries the
commands: the direct socket client (:func:`~virtrio.channels.qmp.open_qmp`), libvirt's
``qemuMonitorCommand``, or a VM handle that survives reconnects. A subclass implements
:meth:`QmpCommands.execute`; the helpers come with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from virtrio.primitives import Executor

from ._keys import parse_combo, qcode, text_to_combos
from ._protocol import QemuVersion, QmpProtocolError

__all__ = ["QmpCommands", "VmStatus"]


@attrs.frozen
class VmStatus:
    """The result of ``query-status``."""

    #: QEMU's run state: ``running``, ``paused``, ``prelaunch``, ``shutdown``, ...
    status: str
    running: bool


class QmpCommands(Executor):
    """Typed QMP helpers written once against :class:`~virtrio.primitives.Executor`: a
    subclass implements :meth:`execute`, the helpers come with it."""

    async def query_status(self, *, timeout: float | None = None) -> VmStatus:
        """The VM's run state (``query-status``)."""
        value = await self.execute("query-status", timeout=timeout)
        try:
            return VmStatus(str(value["status"]), bool(value["running"]))
        except (KeyError, TypeError) as exc:
            raise QmpProtocolError(f"malformed query-status reply {value!r}") from exc

    async def query_version(self, *, timeout: float | None = None) -> QemuVersion:
        """QEMU's version (``query-version``)."""
        return QemuVersion.from_qmp(await self.execute("query-version", timeout=timeout))

    async def send_key(
        self,
        keys: str | Sequence[str],
        *,
        hold_time: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Press keys together and release them (``send-key``).

        Args:
            keys: a combo such as ``"ctrl-alt-delete"``, or a sequence of key names/qcodes
                pressed in order (``["ctrl", "alt", "delete"]``).
            hold_time: seconds the keys stay down (QEMU's default is 0.1 s).

        Raises:
            ConfigError: a key name is unknown (nothing is sent).
        """
        codes = parse_combo(keys) if isinstance(keys, str) else tuple(qcode(k) for k in keys)
        arguments: dict[str, Any] = {"keys": [{"type": "qcode", "data": c} for c in codes]}
        if hold_time is not None:
            arguments["hold-time"] = max(1, round(hold_time * 1000))
        await self.execute("send-key", arguments, timeout=timeout)

    async def send_keys(
        self,
        combos: Sequence[str],
        *,
        hold_time: float | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send several combos one after another (``["ctrl-c", "ret"]``).

        Raises:
            ConfigError: a key name is unknown (nothing is sent).
        """
        parsed = [parse_combo(c) for c in combos]
        for codes in parsed:
            await self.send_key(codes, hold_time=hold_time, timeout=timeout)

    async def type_text(
        self, text: str, *, hold_time: float = 0.01, timeout: float | None = None
    ) -> None:
        """Type ``text`` as a US keyboard would, one ``send-key`` per character.

        Raises:
            ConfigError: a character cannot be typed (nothing is sent).
        """
        for codes in text_to_combos(text):
            await self.send_key(codes, hold_time=hold_time, timeout=timeout)
