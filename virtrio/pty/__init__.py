"""The terminal daemon's client SDK, under the short name the README documents.

A thin re-export of :mod:`virtrio.channels.pty`'s client (outside the layers; the daemon
itself is :mod:`virtrio.engine.pty`)::

    async with open_pty_client("~/.vibest/pty/socket") as client:
        session = await client.create(command="/bin/sh", cols=80, rows=24)
        await client.attach(session)
        await client.input(session, b"echo hello\\n")
        with client.events() as events:
            async for event in events:
                ...   # Output, Exit, BackpressureWarning, Error
"""

from virtrio.channels.pty import (
    BackpressureWarning as BackpressureWarning,
    Error as Error,
    Exit as Exit,
    Level as Level,
    Output as Output,
    PtyClient as PtyClient,
    PtyEvent as PtyEvent,
    PtyEvents as PtyEvents,
    PtyRequestError as PtyRequestError,
    SessionInfo as SessionInfo,
    default_socket_path as default_socket_path,
    open_pty_client as open_pty_client,
)

__all__ = [
    "BackpressureWarning",
    "Error",
    "Exit",
    "Level",
    "Output",
    "PtyClient",
    "PtyEvent",
    "PtyEvents",
    "PtyRequestError",
    "SessionInfo",
    "default_socket_path",
    "open_pty_client",
]
