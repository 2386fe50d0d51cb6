"""spawn_here forks in the calling thread, so a death signal follows that thread's life."""

from __future__ import annotations

import os
import select
import subprocess
import threading

import trio

from virtrio.engine._child import Child, die_with_parent, spawn_here


def test_the_death_signal_follows_the_thread_that_spawned() -> None:
    started: list[Child] = []

    def run_in_a_thread_that_ends() -> None:
        async def spawn() -> None:
            argv = ["sh", "-c", "echo ready; exec sleep 600"]
            child = await spawn_here(die_with_parent(argv), stdout=subprocess.PIPE)
            started.append(child)
            # the thread may end only once the death signal is set (setpriv has exec'd sh)
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"

        trio.run(spawn)

    thread = threading.Thread(target=run_in_a_thread_that_ends)
    thread.start()
    thread.join()
    child = started[0]
    pidfd = os.pidfd_open(child.pid)
    try:
        # the thread has ended: the kernel sends the child SIGKILL (an event, not a delay)
        readable, _, _ = select.select([pidfd], [], [], 60)
        assert readable == [pidfd], "the child outlived the thread that spawned it"
    finally:
        os.close(pidfd)
    status = trio.run(child.wait)
    assert status == -9
    assert child.stdout is not None
    child.stdout.close()


async def test_wait_reaps_and_signals_after_exit_are_ignored() -> None:
    child = await spawn_here(["sh", "-c", "exit 3"])
    assert await child.wait() == 3
    assert child.returncode == 3
    child.terminate()  # already reaped: nothing to signal, no error
    child.kill()


async def test_terminate_ends_a_running_child() -> None:
    child = await spawn_here(["sleep", "600"])
    assert child.returncode is None
    child.terminate()
    assert await child.wait() == -15
