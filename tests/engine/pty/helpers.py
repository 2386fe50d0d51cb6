"""Reading a session's events in tests."""

from __future__ import annotations

import trio

from virtrio.channels.pty import Exit, Output, PtyClient


async def read_until(
    client: PtyClient, session: int, needle: bytes, *, timeout: float = 15.0
) -> bytes:
    """The session's output up to and including ``needle``; fails on its exit or the timeout."""
    seen = b""
    with trio.fail_after(timeout):
        while needle not in seen:
            event = await client.events().receive()
            if isinstance(event, Output) and event.session == session:
                seen += event.data
            elif isinstance(event, Exit) and event.session == session:
                raise AssertionError(f"session exited ({event}) before {needle!r}: {seen[-500:]!r}")
    return seen


async def read_to_exit(
    client: PtyClient, session: int, *, timeout: float = 20.0
) -> tuple[bytes, Exit]:
    """All the session's output, then its exit."""
    seen = bytearray()
    with trio.fail_after(timeout):
        while True:
            event = await client.events().receive()
            if isinstance(event, Output) and event.session == session:
                seen += event.data
            elif isinstance(event, Exit) and event.session == session:
                return bytes(seen), event
