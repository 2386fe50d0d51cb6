"""``virtrio pty attach`` driven through a real tmux: raw mode, typing, resize, detach."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from tests.engine.pty.helpers import read_to_exit
from tests.peers import require_program
from virtrio.channels.pty import Exit, open_pty_client
from virtrio.engine.pty import PtyDaemon

Tmux = Callable[..., Awaitable[str]]


@pytest.fixture
async def tmux(tmp_path: Path) -> AsyncIterator[Tmux]:
    """Run a tmux command on a private tmux server (killed at the end); returns its stdout."""
    binary = require_program("tmux", "tmux")
    socket = tmp_path / "tmux.sock"

    async def run(*args: str) -> str:
        done = await trio.run_process(
            [binary, "-S", str(socket), "-f", "/dev/null", *args], capture_stdout=True
        )
        return done.stdout.decode()

    try:
        yield run
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(
                [binary, "-S", str(socket), "kill-server"], check=False, capture_stderr=True
            )


async def wait_for_pane(tmux: Tmux, text: str, *, timeout: float = 20) -> str:
    """The pane once it shows ``text``. tmux (another process) is asked again every 50 ms: its
    capture-pane has no change notification to wait on (control mode, ``tmux -C``, would)."""
    with trio.fail_after(timeout):
        while True:
            pane = await tmux("capture-pane", "-p", "-t", "t")
            if text in pane:
                return pane
            await trio.sleep(0.05)


async def test_attach_in_a_real_terminal(pty_daemon: PtyDaemon, tmux: Tmux) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", env={"PS1": "$ "})
        command = f"{sys.executable} -m virtrio pty --socket {pty_daemon.socket_path} attach {sid}"
        await tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "24", command)
        await tmux("set-option", "-t", "t", "remain-on-exit", "on")
        await tmux("send-keys", "-t", "t", "echo $((2 + 3))X", "Enter")
        await wait_for_pane(tmux, "5X")
        await tmux("send-keys", "-t", "t", "stty size", "Enter")
        await wait_for_pane(tmux, "24 80")  # the session took the terminal's size
        # raw mode: ^C reaches the session's job instead of killing the attach client
        cmd = "echo started-$((3 + 4)); sleep 100; echo after-sleep"
        await tmux("send-keys", "-t", "t", cmd, "Enter")
        await wait_for_pane(tmux, "started-7")  # the job runs: ^C now reaches it
        await tmux("send-keys", "-t", "t", "C-c")
        await tmux("send-keys", "-t", "t", "echo still-$((1 + 1))", "Enter")
        await wait_for_pane(tmux, "still-2")
        await tmux("resize-window", "-t", "t", "-x", "100", "-y", "30")
        await tmux("send-keys", "-t", "t", "stty size", "Enter")
        await wait_for_pane(tmux, "30 100")  # SIGWINCH followed
        await tmux("send-keys", "-t", "t", "-H", "1c")  # Ctrl-\\, the detach key
        pane = await wait_for_pane(tmux, "detached from session")
        assert "\nafter-sleep" not in pane  # ^C interrupted the job, in the session
        [info] = await client.list()  # the session lives on
        assert (info.session, info.attached) == (sid, 0)
        await client.attach(sid)
        await client.input(sid, b"exit 4\n")
        assert (await read_to_exit(client, sid))[1] == Exit(sid, 4, None)


async def test_create_list_signal_kill_commands(pty_daemon: PtyDaemon) -> None:
    async def virtrio(*args: str) -> str:
        done = await trio.run_process(
            [sys.executable, "-m", "virtrio", *args], capture_stdout=True, capture_stderr=True
        )
        return done.stdout.decode()

    socket = str(pty_daemon.socket_path)
    created = await virtrio("pty", "--socket", socket, "create", "--cols", "90", "--", "/bin/cat")
    sid = int(created)
    listing = await virtrio("pty", "--socket", socket, "list")
    assert f"{sid}  pty" in listing
    assert "90x24" in listing
    assert "/bin/cat" in listing
    async with open_pty_client(pty_daemon.socket_path) as client:
        await client.attach(sid)
        await virtrio("pty", "--socket", socket, "signal", str(sid), "TERM")
        assert (await read_to_exit(client, sid))[1] == Exit(sid, None, 15)
        sid = int(await virtrio("pty", "--socket", socket, "create", "/bin/cat"))
        await client.attach(sid)
        await virtrio("pty", "--socket", socket, "kill", str(sid))
        assert (await read_to_exit(client, sid))[1] == Exit(sid, None, 9)
