"""QMP, the QEMU Machine Protocol: :func:`open_qmp` and the typed commands.

::

    async with open_qmp("unix:/tmp/vm/qmp.sock") as qmp:
        print(await qmp.query_status())              # VmStatus(status='running', running=True)
        await qmp.send_key("ctrl-alt-delete")
        await qmp.type_text("root\\n")
        with qmp.events("SHUTDOWN") as listener:
            await qmp.execute("system_powerdown")
            event = await listener.receive()

Any number of tasks may call one client at once. Error replies raise
:class:`QmpCommandError` with QEMU's error class and description; a lost connection fails every
pending call with :class:`~virtrio.errors.ConnectionLostError` and ends every event listener
with it.
"""

from ._client import QmpClient as QmpClient, open_qmp as open_qmp
from ._commands import QmpCommands as QmpCommands, VmStatus as VmStatus
from ._keys import QCODES as QCODES, parse_combo as parse_combo, text_to_combos as text_to_combos
from ._protocol import (
    QemuVersion as QemuVersion,
    QmpCommandError as QmpCommandError,
    QmpError as QmpError,
    QmpEvent as QmpEvent,
    QmpGreeting as QmpGreeting,
    QmpLocalProtocolError as QmpLocalProtocolError,
    QmpProtocol as QmpProtocol,
    QmpProtocolError as QmpProtocolError,
    QmpState as QmpState,
)

__all__ = [
    "QCODES",
    "QemuVersion",
    "QmpClient",
    "QmpCommandError",
    "QmpError",
    "QmpCommands",
    "QmpEvent",
    "QmpGreeting",
    "QmpLocalProtocolError",
    "QmpProtocol",
    "QmpProtocolError",
    "QmpState",
    "VmStatus",
    "open_qmp",
    "parse_combo",
    "text_to_combos",
]
