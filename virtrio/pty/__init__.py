"""The terminal session daemon (seed 003) and its client SDK.

Serve sessions::

    await serve_pty_daemon(PtyDaemonConfig.from_env())     # or: virtrio pty-daemon

Use them from any Trio program::

    async with open_pty_client("~/.vibest/pty/socket") as client:
        session = await client.create(command="/bin/sh", cols=80, rows=24)
        await client.attach(session)
        await client.input(session, b"echo hello\\n")
        async for event in client.events():
            ...   # Output, Exit, BackpressureWarning, Error

The wire protocol is in :mod:`virtrio.channels.pty` and docs/pty-protocol.md.
"""

from virtrio.channels.pty import (
    BackpressureWarning as BackpressureWarning,
    Error as Error,
    Exit as Exit,
    Level as Level,
    Output as Output,
    SessionInfo as SessionInfo,
)

from ._client import (
    PtyClient as PtyClient,
    PtyRequestError as PtyRequestError,
    open_pty_client as open_pty_client,
)
from ._config import (
    ENVIRONMENT as ENVIRONMENT,
    PtyDaemonConfig as PtyDaemonConfig,
    default_socket_path as default_socket_path,
)
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
