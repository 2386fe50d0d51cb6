"""The daemon with real shells on real PTYs: sessions, input, resize, signals, exits, late
attach, many clients, and a specific reply to every kind of bad input."""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import msgpack
import pyte
import pytest
import trio

from tests.engine.pty.helpers import read_to_exit, read_until
from virtrio.channels.pty import (
    NEED_DATA,
    BackpressureWarning,
    Error,
    Exit,
    FrameDecoder,
    List,
    Output,
    PtyClient,
    PtyRequestError,
    Sessions,
    encode,
    open_pty_client,
)
from virtrio.engine.pty import PtyDaemon, PtyDaemonConfig, PyteEmulator, serve_pty_daemon
from virtrio.errors import CommandError, ConfigError


async def test_create_input_and_output(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh")
        await client.attach(sid)
        await client.input(sid, "echo $((6 * 7))x\n")
        assert b"42x\r\n" in await read_until(client, sid, b"42x\r\n")
        [info] = await client.list()
        assert (info.session, info.kind, info.command, info.attached) == (sid, "pty", "/bin/sh", 1)
        assert info.pid
        assert info.last_attached
        assert info.created <= info.last_attached


async def test_resize_is_seen_by_stty_size(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", cols=100, rows=30)
        await client.attach(sid)
        await client.input(sid, "stty size; echo =\n")
        assert b"30 100\r\n" in await read_until(client, sid, b"\r\n=\r\n")
        await client.resize(sid, 132, 43)
        await client.input(sid, "stty size; echo =\n")
        assert b"43 132\r\n" in await read_until(client, sid, b"\r\n=\r\n")
        [info] = await client.list()
        assert (info.cols, info.rows) == (132, 43)
        with pytest.raises(PtyRequestError, match="at least 1x1"):
            await client.resize(sid, 0, 10)


async def test_exit_code_and_output_after_exit_are_drained(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(
            command="/bin/sh", args=["-c", "read go; head -c 300000 /dev/zero | tr '\\0' x; exit 5"]
        )
        await client.attach(sid)
        await client.input(sid, "go\n")
        output, exit_event = await read_to_exit(client, sid)
        assert output.count(b"x") == 300000  # nothing lost between the exit and the Exit
        assert exit_event == Exit(sid, 5, None)
        assert await client.list() == ()  # an ended session is gone


async def test_killed_by_a_signal(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh")
        await client.attach(sid)
        await client.input(sid, "kill -9 $$\n")
        _, exit_event = await read_to_exit(client, sid)
        assert exit_event == Exit(sid, None, 9)


async def test_signal_reaches_the_foreground_job(pty_daemon: PtyDaemon) -> None:
    script = 'trap "echo got-usr1; exit 7" USR1; echo ready; while :; do sleep 5 & wait; done'
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", args=["-c", script])
        await client.attach(sid)
        await read_until(client, sid, b"ready")
        await client.signal(sid, "SIGUSR1")
        output, exit_event = await read_to_exit(client, sid)
        assert b"got-usr1" in output
        assert exit_event == Exit(sid, 7, None)
        sid = await client.create(command="/bin/sh", args=["-c", "echo ready; sleep 30"])
        await client.attach(sid)
        await read_until(client, sid, b"ready")
        with pytest.raises(PtyRequestError, match="unknown signal 'SIGNOPE'"):
            await client.signal(sid, "SIGNOPE")
        await client.signal(sid, 15)
        assert (await read_to_exit(client, sid))[1] == Exit(sid, None, 15)


async def test_the_shell_has_the_pty_as_its_controlling_terminal(pty_daemon: PtyDaemon) -> None:
    # job control works (a background job gets its own process group), /dev/tty opens, and the
    # shell leads its own session on the pts that `tty` prints
    script = "tty; set -m; sleep 30 & echo bg=$!; echo x > /dev/tty && echo devtty-ok; read x"
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh", args=["-c", script])
        await client.attach(sid)
        output = await read_until(client, sid, b"devtty-ok")
        [info] = await client.list()
        assert info.pid is not None
        assert b"job control turned off" not in output
        match = re.search(rb"(/dev/pts/\d+)\r\nbg=(\d+)\r\n", output)
        assert match, output
        pts, background = match[1].decode(), int(match[2])
        assert os.getsid(info.pid) == os.getpgid(info.pid) == info.pid
        assert os.getpgid(background) == background  # a job of its own: job control is on
        stat_line = await trio.Path(f"/proc/{info.pid}/stat").read_text()
        tty_nr = int(stat_line.rsplit(")", 1)[1].split()[4])
        assert tty_nr == os.stat(pts).st_rdev  # its controlling terminal is that pts
        await client.kill(sid)
        await read_to_exit(client, sid)


async def test_kill_ends_the_session(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/sh")
        await client.attach(sid)
        await client.kill(sid)
        assert (await read_to_exit(client, sid))[1] == Exit(sid, None, 9)
        with pytest.raises(PtyRequestError, match=f"no session {sid}") as info:
            await client.input(sid, b"x")
        assert (info.value.code, info.value.session) == ("unknown_session", sid)
        # the daemon's error reply is a remote error, like a QMP error reply
        assert isinstance(info.value, CommandError)
        assert (info.value.error_class, info.value.command) == ("unknown_session", "input")
        assert info.value.desc == f"no session {sid}"


def screen_of(data: bytes, cols: int = 80, rows: int = 24) -> list[str]:
    screen = pyte.Screen(cols, rows)
    pyte.ByteStream(screen).feed(data)
    return [line.rstrip() for line in screen.display]


@pytest.mark.parametrize("emulated", [False, True], ids=["backlog", "emulated"])
async def test_a_late_attach_first_gets_the_current_screen(
    pty_daemon: PtyDaemon, emulated: bool
) -> None:
    async with open_pty_client(pty_daemon.socket_path) as first:
        sid = await first.create(command="/bin/sh", env={"PS1": "$ "})
        await first.attach(sid)
        await first.input(sid, "clear; printf 'one\\n\\033[1;31mtwo\\033[0m\\n'; echo $((3*1))\n")
        await read_until(first, sid, b"3\r\n$ ")
        if emulated:  # let the emulator catch up (it runs once output pauses)
            with trio.fail_after(10):
                await pty_daemon.sessions[sid].wait_emulated()
            assert not pty_daemon.sessions[sid].screen.pending
        async with open_pty_client(pty_daemon.socket_path) as late:
            await late.attach(sid)
            event = await late.events().receive()
            assert isinstance(event, Output)
            assert screen_of(event.data)[:4] == ["one", "two", "3", "$"]
            if emulated:
                assert b"\x1b[0;1;31mtwo" in event.data  # attributes are rendered too
            await first.input(sid, "echo later\n")
            assert b"later" in await read_until(late, sid, b"later\r\n")


async def test_100_clients_on_20_sessions(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as control:
        sessions = [await control.create(command="/bin/cat") for _ in range(20)]
    ready = 0
    all_ready = trio.Event()

    async def one_client(index: int) -> None:
        nonlocal ready
        sid = sessions[index % len(sessions)]
        async with open_pty_client(pty_daemon.socket_path) as client:
            await client.attach(sid)
            ready += 1
            if ready == 100:
                all_ready.set()
            await all_ready.wait()
            if index < len(sessions):  # one writer per session; all 5 readers see its echo
                await client.input(sid, f"marker-{sid}-end\n")
            await read_until(client, sid, f"marker-{sid}-end".encode(), timeout=60)

    async with trio.open_nursery() as nursery:
        for index in range(100):
            nursery.start_soon(one_client, index)
        with trio.fail_after(60):
            await all_ready.wait()
        assert pty_daemon.connection_count == 100
    assert len(pty_daemon.sessions) == 20


FLOOD = 48_000_000


@asynccontextmanager
async def flood_past_a_slow_subscriber(
    nursery: trio.Nursery, config: PtyDaemonConfig
) -> AsyncIterator[tuple[PtyDaemon, PtyClient, int]]:
    """A session prints FLOOD bytes to two clients: one reads everything (checked here), the
    other never reads (its event queue holds one event) until the body of the ``with``."""
    # the bound (32 MiB) is two thirds of the flood: the slow one overflows for sure, while the
    # fast one may lag by that much (a loaded machine) before its own queue would drop anything
    # (with 16 MiB it was once disconnected too, under a full suite on 2 busy cores)
    config = attrs.evolve(config, max_queue_size=4096, flow_threshold=1024)
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    script = f"read go; head -c {FLOOD} /dev/zero | tr '\\0' x; exit 0"
    async with (
        open_pty_client(daemon.socket_path) as fast,
        open_pty_client(daemon.socket_path, max_queue=1) as slow,
    ):
        sid = await fast.create(command="/bin/sh", args=["-c", script])
        await slow.attach(sid)
        await fast.attach(sid)
        await fast.input(sid, "go\n")
        output, exit_event = await read_to_exit(fast, sid, timeout=120)
        assert output.count(b"x") == FLOOD  # the slow one cost the fast one nothing
        assert exit_event == Exit(sid, 0, None)
        yield daemon, slow, sid


async def test_a_flood_reaches_a_subscriber_that_lags_whole_and_in_order(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig
) -> None:
    """Output goes straight from the reactor to a subscriber with nothing queued, in part when
    its socket fills, the rest queued and sent by its forwarder in batches: one that reads
    along and one that reads nothing until the flood is over (4 MB: far more than its socket
    holds, far less than its queue bound) both get every byte, in order."""
    config = attrs.evolve(pty_config, max_queue_size=4096)  # 32 MiB
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    count = 500_000
    expected = b"go\r\n" + b"".join(b"%d\r\n" % i for i in range(1, count + 1))  # echo first
    async with (
        open_pty_client(daemon.socket_path) as along,
        open_pty_client(daemon.socket_path, max_queue=1) as behind,
    ):
        sid = await along.create(command="/bin/sh", args=["-c", f"read go; seq {count}"])
        await behind.attach(sid)
        await along.attach(sid)
        await along.input(sid, "go\n")
        output, exit_event = await read_to_exit(along, sid, timeout=120)
        assert output == expected
        assert exit_event == Exit(sid, 0, None)
        late, late_exit = await read_to_exit(behind, sid, timeout=60)
        assert late == expected
        assert late_exit == Exit(sid, 0, None)
    stats = daemon.statistics()
    assert (stats.red_warnings, stats.chunks_dropped) == (0, 0)  # held back, nothing lost


async def test_a_subscriber_that_never_reads_gets_red_and_others_everything(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig
) -> None:
    async with flood_past_a_slow_subscriber(nursery, pty_config) as (daemon, slow, sid):
        # the policy acted as the slow one's queue filled, not when it reads again
        while_stalled = daemon.statistics()
        assert while_stalled.red_warnings >= 1
        assert while_stalled.chunks_dropped > 0
        # now the slow one reads what it was sent: warnings, a loss it was told of, the exit
        events = []
        with trio.fail_after(60):
            async for event in slow.events():
                events.append(event)
                if isinstance(event, Exit):
                    break
        warnings = [e for e in events if isinstance(e, BackpressureWarning)]
        levels = {w.level.value for w in warnings}
        assert "red" in levels  # yellow first, but the notice is replaced while it is blocked
        assert sum(w.dropped for w in warnings) > 0
        received = sum(e.data.count(b"x") for e in events if isinstance(e, Output))
        assert received < FLOOD
        assert events[-1] == Exit(sid, 0, None)
        stats = daemon.statistics()
        assert stats.red_warnings >= 1
        assert stats.chunks_dropped == sum(w.dropped for w in warnings)
        assert stats.chunks_dropped == while_stalled.chunks_dropped  # nothing after the flood
        assert (stats.sessions_started, stats.connections_accepted, stats.disconnects) == (1, 2, 0)


async def test_auto_disconnect_closes_the_slow_subscriber_only(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig
) -> None:
    config = attrs.evolve(pty_config, auto_disconnect=True)
    async with flood_past_a_slow_subscriber(nursery, config) as (daemon, slow, _sid):
        with trio.fail_after(30):
            events = [event async for event in slow.events()]
        assert not any(isinstance(e, Exit) for e in events)
        assert daemon.statistics().disconnects == 1
        assert slow.closed_reason is not None
        assert "closed the connection" in str(slow.closed_reason)


async def raw_frames(stream: trio.SocketStream, decoder: FrameDecoder, count: int) -> list[object]:
    """Up to ``count`` messages (fewer if the stream ends)."""
    out: list[object] = []
    with trio.fail_after(10):
        while len(out) < count:
            message = decoder.next_message()
            if message is not NEED_DATA:
                out.append(message)
                continue
            if not (data := await stream.receive_some(65536)):
                break
            decoder.receive_data(data)
    return out


async def test_garbage_gets_an_error_and_other_clients_are_untouched(
    pty_daemon: PtyDaemon,
) -> None:
    async with open_pty_client(pty_daemon.socket_path) as good:
        sid = await good.create(command="/bin/sh")
        await good.attach(sid)
        stream = await trio.open_unix_socket(str(pty_daemon.socket_path))
        decoder = FrameDecoder()
        bad = msgpack.packb({"type": "input", "session": "one", "data": b"x", "id": 5})
        await stream.send_all(struct.pack(">I", 3) + b"\xc1\xc1\xc1")  # not MessagePack
        await stream.send_all(struct.pack(">I", len(bad)) + bad)
        await stream.send_all(encode(List(id=6)))  # still served: the frames were consumed
        first, second, third = await raw_frames(stream, decoder, 3)
        assert isinstance(first, Error)
        assert first.code == "invalid_msgpack"
        assert isinstance(second, Error)
        assert second.code == "invalid_message"
        assert second.id == 5
        assert "'session' must be an unsigned 32-bit integer" in second.message
        assert isinstance(third, Sessions)
        assert third.id == 6
        await stream.send_all(struct.pack(">I", 2**31))  # an absurd length: no boundary left
        [error] = await raw_frames(stream, decoder, 2)  # and then the end of the stream
        assert isinstance(error, Error)
        assert error.code == "frame_too_large"
        assert pty_daemon.statistics().bad_frames == 3
        with trio.fail_after(5):
            assert await stream.receive_some(10) == b""
        await stream.aclose()
        await good.input(sid, "echo $((20+3))!\n")
        await read_until(good, sid, b"23!")


async def test_a_map_with_an_array_key_gets_invalid_msgpack_and_the_connection_stays(
    pty_daemon: PtyDaemon,
) -> None:
    """``{[]: 0}`` (frame 00 00 00 03 81 90 00) made msgpack raise TypeError, and the daemon
    closed the connection without a reply."""
    stream = await trio.open_unix_socket(str(pty_daemon.socket_path))
    async with stream:
        decoder = FrameDecoder()
        await stream.send_all(bytes.fromhex("00000003819000") + encode(List(id=7)))
        first, second = await raw_frames(stream, decoder, 2)
        assert isinstance(first, Error)
        assert first.code == "invalid_msgpack"
        assert isinstance(second, Sessions)
        assert second.id == 7
        assert pty_daemon.statistics().bad_frames == 1


async def test_the_socket_is_private(pty_daemon: PtyDaemon, tmp_path: os.PathLike[str]) -> None:
    path = pty_daemon.socket_path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    with pytest.raises(ConfigError, match="already listening"):
        await serve_pty_daemon(pty_daemon.config)
    shared = path.parent.parent / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(ConfigError, match="must be private"):
        await serve_pty_daemon(attrs.evolve(pty_daemon.config, socket_path=shared / "s"))


async def test_limits(nursery: trio.Nursery, pty_config: PtyDaemonConfig) -> None:
    config = attrs.evolve(pty_config, max_sessions=2, max_connections=2)
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    async with open_pty_client(daemon.socket_path) as client:
        with pytest.raises(PtyRequestError, match="cannot start '/no/such/program'") as info:
            await client.create(command="/no/such/program")
        assert info.value.code == "spawn_failed"
        await client.create(command="/bin/cat")
        await client.create(command="/bin/cat")
        with pytest.raises(PtyRequestError, match="maximum of 2 sessions") as info:
            await client.create(command="/bin/cat")
        assert info.value.code == "too_many_sessions"
        with pytest.raises(PtyRequestError, match="no session 99"):
            await client.attach(99)
        with pytest.raises(PtyRequestError, match="not attached"):
            await client.detach(1)
        async with (
            open_pty_client(daemon.socket_path),
            open_pty_client(daemon.socket_path) as third,
        ):
            with trio.fail_after(5):
                events = [e async for e in third.events()]
            assert [e.code for e in events] == ["too_many_connections"]  # type: ignore[union-attr]
            assert "maximum of 2 connections" in str(third.closed_reason)
        assert daemon.statistics().connections_refused == 1


async def test_detach_stops_output_and_the_session_keeps_running(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(command="/bin/cat")
        await client.attach(sid)
        await client.input(sid, b"before\n")
        await read_until(client, sid, b"before\r\n")
        await client.detach(sid)
        await client.input(sid, b"while-detached\n")
        [info] = await client.list()
        assert info.attached == 0
        await client.attach(sid)
        seen = await read_until(client, sid, b"while-detached\r\n")  # from the screen snapshot
        assert seen.count(b"while-detached") >= 1


class ExplodingEmulator(PyteEmulator):
    """A plugged-in emulator with a bug."""

    def feed(self, data: bytes) -> None:
        raise ValueError("emulator bug")


async def test_a_plugged_in_emulator_that_fails_costs_only_the_screen(
    nursery: trio.Nursery, pty_config: PtyDaemonConfig, caplog: pytest.LogCaptureFixture
) -> None:
    config = attrs.evolve(pty_config, emulator=ExplodingEmulator)
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, config)
    async with open_pty_client(daemon.socket_path) as client:
        sid = await client.create(command="/bin/cat")
        await client.attach(sid)
        await client.input(sid, b"one\n")
        await read_until(client, sid, b"one\r\n")
        with trio.fail_after(10):  # the emulator runs (and fails) once output pauses
            await daemon.sessions[sid].wait_emulated()
        assert "terminal emulator failed" in caplog.text
        await client.input(sid, b"two\n")
        await read_until(client, sid, b"two\r\n")
        [info] = await client.list()
        assert info.session == sid


async def test_a_seed_client_that_sends_no_ids_works_unchanged(pty_daemon: PtyDaemon) -> None:
    """Plain MessagePack maps as the seed's SDK writes them: replies only where the seed has
    one (created), then output events; ack is accepted silently."""

    def frame(message: dict[str, object]) -> bytes:
        payload = msgpack.packb(message)
        return struct.pack(">I", len(payload)) + payload

    stream = await trio.open_unix_socket(str(pty_daemon.socket_path))
    async with stream:
        await stream.send_all(
            frame({"type": "create", "options": {"shell": "/bin/sh", "cols": 80, "rows": 24}})
        )
        buffer = b""
        with trio.fail_after(10):
            while len(buffer) < 4 or len(buffer) < 4 + struct.unpack(">I", buffer[:4])[0]:
                buffer += await stream.receive_some(4096)
        size = struct.unpack(">I", buffer[:4])[0]
        created = msgpack.unpackb(buffer[4 : 4 + size])
        assert created["type"] == "created"
        assert "id" not in created
        sid = created["session"]
        await stream.send_all(
            frame({"type": "attach", "session": sid})
            + frame({"type": "ack", "session": sid, "count": 1})
            + frame({"type": "input", "session": sid, "data": "echo seed-$((1+1))\n"})
        )
        unpacker = msgpack.Unpacker()
        seen = b""
        buffer = buffer[4 + size :]
        with trio.fail_after(10):
            while b"seed-2\r\n" not in seen:
                while len(buffer) >= 4 and len(buffer) >= 4 + struct.unpack(">I", buffer[:4])[0]:
                    size = struct.unpack(">I", buffer[:4])[0]
                    unpacker.feed(buffer[4 : 4 + size])
                    buffer = buffer[4 + size :]
                    event = next(unpacker)
                    assert event["type"] == "output"  # nothing but output: no ok, no error
                    assert event["session"] == sid
                    assert isinstance(event["data"], bytes)  # bin
                    seen += event["data"]
                if b"seed-2\r\n" not in seen:
                    buffer += await stream.receive_some(4096)


async def test_input_without_waiting_reports_failures_as_events(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path) as client:
        await client.input(999, b"lost", wait=False)
        with trio.fail_after(10):
            event = await client.events().receive()
        assert event == Error("unknown_session", "no session 999", session=999)
        sid = await client.create(command="/bin/cat")
        await client.attach(sid)
        await client.input(sid, b"quick\n", wait=False)
        await read_until(client, sid, b"quick\r\n")


async def test_a_subscription_sets_the_queue_bound_while_open(pty_daemon: PtyDaemon) -> None:
    async with open_pty_client(pty_daemon.socket_path, max_queue=64) as client:
        sid = await client.create(command="/bin/sh", args=["-c", "echo one; echo two"])
        await client.attach(sid)
        with client.events(max_queue=1) as events:
            assert client._events.limit == 1  # the reader now stops after one unread event
            seen = bytearray()
            async for event in events:
                if isinstance(event, Output):
                    seen += event.data
                elif isinstance(event, Exit):
                    break
        assert b"one" in seen
        assert b"two" in seen
        assert client._events.limit == 64
        with pytest.raises(ValueError, match="at least 1"):
            client.events(max_queue=0)
