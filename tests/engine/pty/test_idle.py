"""What an idle session holds (no task, no emulator), and the life of a session without a task
of its own: its working directory, a background job holding the terminal after the program
exited, shutdown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from tests.engine.pty.helpers import read_to_exit, read_until
from virtrio.channels.pty import Exit, Output, PtyRequestError, open_pty_client
from virtrio.engine.pty import PtyDaemon, PtyDaemonConfig, PyteEmulator, serve_pty_daemon


async def test_an_idle_session_holds_no_task_and_no_emulator(
    nursery: trio.Nursery, pty_daemon: PtyDaemon
) -> None:
    tasks = len(nursery.child_tasks)
    async with open_pty_client(pty_daemon.socket_path) as client:
        tasks = len(nursery.child_tasks)
        sids = [await client.create(command="/bin/sh", env={"PS1": "$ "}) for _ in range(5)]
        await trio.sleep(0.3)  # each shell prints its prompt
        for sid in sids:
            session = pty_daemon.sessions[sid]
            assert session.screen.emulator is None
            assert session._fanout is None  # no subscriber yet: no fan-out either
        assert len(pty_daemon._reactor) == 2 * len(sids)  # a PTY and a pidfd each
        assert len(nursery.child_tasks) == tasks  # the daemon's tasks are in a nursery below


async def test_a_screen_made_on_demand_replays_the_history(pty_daemon: PtyDaemon) -> None:
    """The emulator made only when asked for (here: wait_emulated) shows what an emulator fed
    all along would: what the client saw (the attach snapshot, then the output)."""
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", env={"PS1": "$ "}, cols=40, rows=5)
        await client.attach(sid)
        await client.input(sid, "printf 'a\\nb\\nc\\nd\\ne\\nf\\n\\033[1;30HX\\n'\n")
        seen = await read_until(client, sid, b"X\r\n$ ")
        session = pty_daemon.sessions[sid]
        assert session.screen.emulator is None
        with trio.fail_after(10):
            await session.wait_emulated()
        emulator = session.screen.emulator
        assert emulator is not None
        reference = PyteEmulator(40, 5, 1000)
        reference.feed(seen)
        assert emulator.display() == reference.display()
        assert emulator.display()[0].rstrip().endswith("X")  # the cursor move, replayed
        assert emulator.cursor() == reference.cursor()
        assert emulator.render() == reference.render()  # the scrolled-off lines too


async def test_the_working_directory(pty_daemon: PtyDaemon, tmp_path: Path) -> None:
    folder = tmp_path / "here"
    folder.mkdir()
    async with open_pty_client(pty_daemon.socket_path) as client:
        # (it waits for a line: a program that exits at once may end before the attach)
        sid = await client.create(command="/bin/sh", args=["-c", "read go; pwd"], cwd=str(folder))
        await client.attach(sid)
        await client.input(sid, b"\n")
        output, exit_event = await read_to_exit(client, sid)
        assert output.strip().endswith(str(folder).encode())
        assert exit_event == Exit(sid, 0, None)
        with pytest.raises(PtyRequestError) as info:
            await client.create(command="/bin/pwd", cwd=str(tmp_path / "missing"))
        assert info.value.code == "spawn_failed"


async def test_an_exit_while_a_background_job_holds_the_terminal(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig
) -> None:
    """The program exited but a job it left holds the PTY: the rest of the output is awaited
    for drain_timeout, then the session ends with the program's status."""
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, pty_config)
    async with open_pty_client(daemon.socket_path) as client:
        script = "read go; sleep 30 & echo job $!; exit 3"  # (it starts once attached)
        sid = await client.create(command="/bin/sh", args=["-c", script])
        await client.attach(sid)
        await client.input(sid, b"\n")
        output = b""
        with trio.fail_after(10):
            async for event in client.events():
                if isinstance(event, Output):
                    output += event.data
                elif isinstance(event, Exit):
                    assert event == Exit(sid, 3, None)
                    break
        job = int(output.split(b"job ")[1].split()[0])
        os.kill(job, 9)
        assert await client.list() == ()


async def test_shutdown_kills_and_reaps_every_session(pty_config: PtyDaemonConfig) -> None:
    async with trio.open_nursery() as nursery:
        daemon: PtyDaemon = await nursery.start(serve_pty_daemon, pty_config)
        async with open_pty_client(daemon.socket_path) as client:
            sid = await client.create(command="/bin/sh")
            pid = daemon.sessions[sid].pid
            assert pid is not None
        nursery.cancel_scope.cancel()
    with pytest.raises(ChildProcessError):  # killed and reaped: no zombie, no orphan
        os.waitpid(pid, os.WNOHANG)  # noqa: ASYNC222 - WNOHANG does not block
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
