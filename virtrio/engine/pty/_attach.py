"""Attach the local terminal to a session, dtach-style: :func:`attach_terminal`.

The local terminal is put in raw mode, so every key (Ctrl-C included) goes to the session;
the detach key (Ctrl-\\ by default) leaves the session running and returns. The session is
resized to the local terminal, and again on every SIGWINCH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import termios
import tty
from collections.abc import Iterator

import trio

from virtrio.channels.pty import BackpressureWarning, Error, Exit, Output, PtyClient

__all__ = ["DEFAULT_DETACH_KEY", "attach_terminal", "parse_key"]

#: Ctrl-\ , as dtach.
DEFAULT_DETACH_KEY = b"\x1c"


def parse_key(text: str) -> bytes:
    """``^X`` (caret notation) or a single character → the byte it sends."""
    if len(text) == 2 and text[0] == "^":
        return bytes([ord(text[1].upper()) ^ 0x40])
    if len(text) == 1:
        return text.encode()
    raise ValueError(f"a detach key is one character or ^X, not {text!r}")


@contextlib.contextmanager
def _raw_mode(fd: int) -> Iterator[None]:
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # keep keys typed before we attached
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.columns, size.lines


async def attach_terminal(
    client: PtyClient,
    session: int,
    *,
    detach_key: bytes = DEFAULT_DETACH_KEY,
    stdin: int = 0,
    stdout: int = 1,
) -> tuple[bool, int]:
    """Run the terminal on ``stdin``/``stdout`` as the session's until it exits or the user
    types ``detach_key``. Returns ``(detached, status)``: the status to exit with is the
    session's exit code (128 + the signal when one killed it), or 0 after a detach.

    Raises:
        PtyRequestError: no such session.
    """
    status: int | None = None
    detached = False
    out = trio.lowlevel.FdStream(os.dup(stdout))
    keys = trio.lowlevel.FdStream(os.dup(stdin))

    async def forward_keys(cancel: trio.CancelScope) -> None:
        nonlocal status, detached
        while data := await keys.receive_some(4096):
            if (at := data.find(detach_key)) >= 0:
                if at:
                    await client.input(session, data[:at])
                await client.detach(session)
                status, detached = 0, True
                cancel.cancel()
                return
            await client.input(session, data, wait=False)

    async def follow_size() -> None:
        with trio.open_signal_receiver(signal.SIGWINCH) as changes:
            async for _ in changes:
                if (size := _size(stdout)) is not None:
                    await client.resize(session, *size)

    async with out, keys:
        if (size := _size(stdout)) is not None:
            await client.resize(session, *size)
        with _raw_mode(stdin):
            await client.attach(session)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(forward_keys, nursery.cancel_scope)
                nursery.start_soon(follow_size)
                async for event in client.events():
                    if isinstance(event, Output) and event.session == session:
                        await out.send_all(event.data)
                    elif isinstance(event, Exit) and event.session == session:
                        status = event.code if event.code is not None else 128 + (event.signal or 0)
                        break
                    elif isinstance(event, BackpressureWarning | Error):
                        pass  # a terminal that keeps up never sees these; nothing to show raw
                nursery.cancel_scope.cancel()
    if status is None:
        print(f"\r\n[virtrio: lost the daemon: {client.closed_reason}]", file=sys.stderr)
        return False, 1
    return detached, status
