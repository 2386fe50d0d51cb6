"""The terminal session daemon (seed 003), an application of the engine.

Serve sessions::

    await serve_pty_daemon(PtyDaemonConfig.from_env())     # or: virtrio pty-daemon

Its clients use :func:`virtrio.channels.pty.open_pty_client`; the wire protocol is in
:mod:`virtrio.channels.pty` and docs/pty-protocol.md.
"""

from ._config import ENVIRONMENT as ENVIRONMENT, PtyDaemonConfig as PtyDaemonConfig
from ._daemon import (
    PtyDaemon as PtyDaemon,
    PtyDaemonStatistics as PtyDaemonStatistics,
    serve_pty_daemon as serve_pty_daemon,
)
from ._emulator import (
    EmulatorFactory as EmulatorFactory,
    PyteEmulator as PyteEmulator,
    TerminalEmulator as TerminalEmulator,
)
from ._session import Session as Session, SessionError as SessionError

__all__ = [
    "ENVIRONMENT",
    "EmulatorFactory",
    "PtyDaemon",
    "PtyDaemonConfig",
    "PtyDaemonStatistics",
    "PyteEmulator",
    "Session",
    "SessionError",
    "TerminalEmulator",
    "serve_pty_daemon",
]
