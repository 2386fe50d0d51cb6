"""The QEMU guest agent: :func:`open_qga` and the typed commands.

::

    async with open_qga("unix:/tmp/vm/qga.sock") as qga:
        await qga.ping()
        result = await qga.shell("uname -a", timeout=10)
        print(result.exit_code, result.stdout_text)
        await qga.file_write("/tmp/x", b"hello")

Error replies raise :class:`QgaCommandError`; timeouts raise
:class:`~virtrio.errors.VirtrioTimeoutError` and make the next call resynchronise the stream.
"""

from ._client import QgaClient as QgaClient, open_qga as open_qga
from ._commands import (
    ExecResult as ExecResult,
    GuestAgentInfo as GuestAgentInfo,
    QgaCommands as QgaCommands,
)
from ._protocol import (
    QgaCommandError as QgaCommandError,
    QgaError as QgaError,
    QgaLocalProtocolError as QgaLocalProtocolError,
    QgaProtocol as QgaProtocol,
    QgaProtocolError as QgaProtocolError,
)

__all__ = [
    "ExecResult",
    "GuestAgentInfo",
    "QgaClient",
    "QgaCommandError",
    "QgaError",
    "QgaCommands",
    "QgaLocalProtocolError",
    "QgaProtocol",
    "QgaProtocolError",
    "open_qga",
]
