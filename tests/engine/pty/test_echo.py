"""The echo's path through the daemon: after writing input, a connection polls the session's
PTY for the echo (``echo_spin``) and forwards it in the same pass, without the reactor."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from tests.engine.pty.helpers import read_until
from virtrio.channels.pty import open_pty_client
from virtrio.engine.pty import PtyDaemon, PtyDaemonConfig, serve_pty_daemon
from virtrio.engine.pty._session import Session
from virtrio.primitives import SpinPolicy

RAW_CAT = ["-c", "stty raw -echo; echo ready; exec cat"]


async def test_the_echo_is_forwarded_by_the_write_that_caused_it(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", args=RAW_CAT)
        await client.attach(sid)
        await read_until(client, sid, b"ready")
        session = pty_daemon.sessions[sid]
        sub = session.output.subscribe()  # a second subscriber, read here without waiting
        spin = SpinPolicy(1.0, fair=True)
        echoes = 0
        for _ in range(5):  # (a poll may give way to a task that became ready, or a timer)
            await trio.testing.wait_all_tasks_blocked()
            await session.write(b"a")  # no checkpoint: nothing else runs until the poll ends
            caught = session.await_echo(spin)
            assert caught == (spin.caught > echoes)
            if caught:
                echoes += 1
                frame = sub.receive_nowait()  # forwarded already, the reactor never ran
                assert frame.endswith(b"a")
            await read_until(client, sid, b"a")
        assert echoes >= 1
        sub.close()


@pytest.fixture
async def still_daemon(nursery: trio.Nursery, pty_config: PtyDaemonConfig) -> PtyDaemon:
    """A daemon that never polls for echoes (``echo_spin=0``)."""
    socket = pty_config.socket_path.parent.parent / "still" / "socket"
    config = attrs.evolve(pty_config, echo_spin=0.0, socket_path=socket)
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    return daemon


async def test_a_connection_polls_for_the_echo_of_its_own_sessions_input(
    still_daemon: PtyDaemon, pty_daemon: PtyDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[SpinPolicy] = []
    await_echo = Session.await_echo

    def counted(self: Session, spin: SpinPolicy) -> bool:
        polls.append(spin)
        return await_echo(self, spin)

    monkeypatch.setattr(Session, "await_echo", counted)
    async with open_pty_client(still_daemon.socket_path) as client:  # echo_spin=0: no poll
        sid = await client.create(command="/bin/sh", args=RAW_CAT)
        await client.attach(sid)
        await read_until(client, sid, b"ready")
        await client.input(sid, b"x", wait=True)
        await read_until(client, sid, b"x")
    assert polls == []
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", args=RAW_CAT)
        await client.input(sid, b"x", wait=True)  # not attached: nothing to forward here
        assert polls == []
        await client.attach(sid)
        await read_until(client, sid, b"ready")
        for n in range(10):
            await client.input(sid, b"%d;" % n, wait=n % 2 == 0)
            await read_until(client, sid, b"%d;" % n)
        assert len(polls) == 10
        assert len({id(spin) for spin in polls}) == 1  # one policy per connection, learning
        assert polls[0].budget == pty_daemon.config.echo_spin


async def test_the_poll_for_an_echo_gives_way_to_another_sessions_output(
    pty_daemon: PtyDaemon,
) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        quiet = await client.create(command="/bin/sh", args=RAW_CAT)
        await client.attach(quiet)
        await read_until(client, quiet, b"ready")
        loud = await client.create(command="/bin/sh", args=["-c", "read go; echo hello; cat"])
        await client.attach(loud)
        session = pty_daemon.sessions[quiet]
        spin = SpinPolicy(60.0, fair=True)  # a minute: only the other session can end it
        await trio.testing.wait_all_tasks_blocked()
        await pty_daemon.sessions[loud].write(b"go\n")  # (no checkpoint: nothing else runs)
        assert not session.await_echo(spin)  # no echo comes: "hello" ended the poll
        assert (spin.caught, spin.missed, spin.declined) == (0, 0, 1)
        await read_until(client, loud, b"hello")  # which the reactor then forwarded
