"""The QMP client against a real QEMU."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from virtrio.channels.qmp import (
    QmpCommandError,
    QmpEvent,
    QmpLocalProtocolError,
    QmpProtocol,
    open_qmp,
)
from virtrio.engine.guest import QemuProcess
from virtrio.errors import (
    CommandError,
    ConfigError,
    ConnectError,
    ConnectionLostError,
    VirtrioTimeoutError,
)
from virtrio.primitives import Fanout


async def test_greeting_status_and_version(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        assert qmp.greeting.version.major >= 7
        assert "oob" in qmp.greeting.capabilities
        status = await qmp.query_status()
        assert status.running
        assert status.status == "running"
        assert await qmp.query_version() == qmp.greeting.version


async def test_negotiation_is_the_cores_and_can_be_driven_by_hand(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address, negotiate=False) as qmp:
        # QEMU would refuse anything else while negotiating: the core refuses it first
        with pytest.raises(QmpLocalProtocolError, match="negotiating"):
            await qmp.query_status()
        assert qmp.is_connected
        await qmp.execute("qmp_capabilities", {"enable": ["oob"]})
        assert (await qmp.query_status()).running
        # QEMU's own answer to a second negotiation: a remote error, not ours
        with pytest.raises(QmpCommandError, match="CommandNotFound"):
            await qmp.execute("qmp_capabilities")


async def test_error_reply_carries_class_and_description(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        with pytest.raises(QmpCommandError) as info:
            await qmp.execute("no-such-command")
        assert isinstance(info.value, CommandError)
        assert info.value.error_class == "CommandNotFound"
        assert "no-such-command" in info.value.desc
        assert info.value.command == "no-such-command"
        with pytest.raises(QmpCommandError, match=r"GenericError|Invalid parameter"):
            await qmp.execute("human-monitor-command", {"command-line": 5})
        assert (await qmp.query_status()).running  # the connection is still fine


async def test_many_tasks_call_one_client_at_once(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        results: dict[int, object] = {}

        async def call(i: int) -> None:
            command = "query-name" if i % 2 else "query-status"
            results[i] = await qmp.execute(command)

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(call, i)
        for i, value in results.items():
            assert ("running" not in value) if i % 2 else (value["status"] == "running")  # type: ignore[operator,index]
        assert len(results) == 200


async def test_callers_that_loop_share_reused_ids_without_mixing_replies(
    bare_qemu: QemuProcess,
) -> None:
    """Ids come back as replies arrive, so a caller woken by its reply may find its id already
    numbering another caller's command: each reply still reaches its own caller."""
    async with open_qmp(bare_qemu.qmp_address) as qmp:

        async def caller(i: int) -> None:
            for _ in range(25):
                if i % 2:
                    assert "running" not in await qmp.execute("query-name")
                else:
                    assert (await qmp.execute("query-status"))["status"] == "running"

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for i in range(16):
                    nursery.start_soon(caller, i)
        protocol = qmp._connection.protocol
        assert isinstance(protocol, QmpProtocol)
        assert protocol.unanswered == set()
        # ids stay within the callers' number (a few digits on the wire, not a counter's)
        ident, _ = protocol.send_command("query-status")
        protocol.release(ident)
        assert ident <= 16


async def test_a_caller_cancelled_before_sending_gives_its_id_back(
    bare_qemu: QemuProcess,
) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        protocol = qmp._connection.protocol
        assert isinstance(protocol, QmpProtocol)
        with trio.CancelScope() as scope:
            scope.cancel()
            await qmp.query_status()
        assert protocol.unanswered == set()
        with pytest.raises(ValueError, match="non-negative"):
            await qmp.execute("query-status", timeout=-1)
        assert protocol.unanswered == set()
        assert (await qmp.query_status()).running


async def test_events_are_delivered_and_filtered(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        with qmp.events() as everything, qmp.events("RESUME") as resumes:
            await qmp.execute("stop")
            await qmp.execute("cont")
            first, second = await everything.receive(), await everything.receive()
            assert [first.name, second.name] == ["STOP", "RESUME"]
            assert isinstance(first, QmpEvent)
            assert first.timestamp > 0
            assert (await resumes.receive()).name == "RESUME"
            assert resumes.queue_size == 0


async def test_listener_raises_when_the_connection_is_lost(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        with qmp.events() as listener:
            # QEMU may send quit's return before closing, or close first
            with contextlib.suppress(ConnectionLostError):
                await qmp.execute("quit")
            # the SHUTDOWN sent before the socket closed is still delivered, then the error
            assert (await listener.receive()).name == "SHUTDOWN"
            with trio.fail_after(5), pytest.raises(ConnectionLostError, match="QMP connection"):
                await listener.receive()
        await qmp.wait_closed()
        assert not qmp.is_connected
        assert isinstance(qmp.closed_reason, ConnectionLostError)


async def test_pending_calls_fail_promptly_when_qemu_dies(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        os.kill(bare_qemu.pid, signal.SIGSTOP)  # calls now stay pending
        failures: list[BaseException] = []

        async def call() -> None:
            try:
                await qmp.query_status(timeout=30)
            except ConnectionLostError as exc:
                failures.append(exc)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(call)
                await trio.testing.wait_all_tasks_blocked()
                assert qmp.in_flight == 5  # all five were written and wait for their reply
                bare_qemu.kill()
        assert len(failures) == 5
        with pytest.raises(ConnectionLostError, match=str(bare_qemu.qmp_address)):
            await qmp.query_status()


async def test_timeout_then_the_late_reply_is_not_mistaken(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        os.kill(bare_qemu.pid, signal.SIGSTOP)
        try:
            with pytest.raises(VirtrioTimeoutError, match=r"'query-status'.*0.2 s"):
                await qmp.execute("query-status", timeout=0.2)
        finally:
            os.kill(bare_qemu.pid, signal.SIGCONT)
        # the late query-status reply arrives first and is dropped; ours is query-name's
        assert await qmp.execute("query-name") == {}


async def test_second_client_gets_no_greeting(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address):
        with pytest.raises(ConnectError, match=r"no QMP greeting.*another client"):
            async with open_qmp(bare_qemu.qmp_address, connect_timeout=0.5):
                pass


async def test_connect_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match=r"missing.sock") as info:
        async with open_qmp(f"unix:{tmp_path / 'missing.sock'}"):
            pass
    assert info.value.address.endswith("missing.sock")


async def test_a_peer_that_is_not_qmp(tmp_path: Path) -> None:
    path = tmp_path / "fake.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen()

        def talk_nonsense() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH\r\n")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, talk_nonsense)
            with pytest.raises(ConnectError, match=r"no QMP greeting.*invalid JSON"):
                async with open_qmp(f"unix:{path}", connect_timeout=5):
                    pass


GREETING = (
    b'{"QMP": {"version": {"qemu": {"major": 8, "minor": 2, "micro": 0}}, "capabilities": []}}\r\n'
)


@asynccontextmanager
async def in_process_qmp_server(
    tmp_path: Path, talk: Callable[[trio.socket.SocketType], Awaitable[None]]
) -> AsyncIterator[str]:
    """A QMP peer in this process, for what QEMU does rarely or never: ``talk`` has the one
    connection it accepts; yields the address to give ``open_qmp``."""
    listener = trio.socket.socket(socket.AF_UNIX)
    await listener.bind(str(tmp_path / "qmp.sock"))
    listener.listen()

    async def serve() -> None:
        conn, _ = await listener.accept()
        with conn:
            await talk(conn)

    with listener:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield f"unix:{tmp_path / 'qmp.sock'}"


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"", r"negotiation .* failed: .*closed by the peer"),
        (b'{"error": {"class": "GenericError", "desc": "no"}, "id": 1}\r\n', "GenericError"),
    ],
)
async def test_a_failed_negotiation_is_a_connect_error(
    tmp_path: Path, answer: bytes, match: str
) -> None:
    """A peer that greets, then hangs up or refuses qmp_capabilities (QEMU does neither)."""

    async def talk(conn: trio.socket.SocketType) -> None:
        await conn.send(GREETING)
        assert b"qmp_capabilities" in await conn.recv(1024)
        if answer:
            await conn.send(answer)

    async with in_process_qmp_server(tmp_path, talk) as address:
        with pytest.raises(ConnectError, match=match):
            async with open_qmp(address, connect_timeout=5):
                pass


@pytest.mark.parametrize(
    ("offered", "sent"),
    [
        (b"[]", b'{"execute":"qmp_capabilities","id":1}\n'),
        (
            b'["oob"]',
            b'{"execute":"qmp_capabilities","id":1,"arguments":{"enable":["oob"]}}\n',
        ),
    ],
)
async def test_oob_is_enabled_when_offered(tmp_path: Path, offered: bytes, sent: bytes) -> None:
    """As qemu.qmp does: QEMU then reads ahead while it runs a command, instead of reading
    nothing more until it has answered it."""

    async def talk(conn: trio.socket.SocketType) -> None:
        await conn.send(GREETING.replace(b'"capabilities": []', b'"capabilities": ' + offered))
        assert await conn.recv(1024) == sent
        await conn.send(b'{"return": {}, "id": 1}\r\n')
        await conn.recv(1024)  # until the client hangs up

    async with (
        in_process_qmp_server(tmp_path, talk) as address,
        open_qmp(address, connect_timeout=5) as qmp,
    ):
        assert qmp.greeting.capabilities == (("oob",) if b"oob" in offered else ())


async def test_qmp_over_tcp(qemu_binary: str) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        argv = [
            qemu_binary, "-machine", "none", "-nodefaults", "-display", "none",
            "-chardev", f"socket,id=mon,fd={listener.fileno()},server=on,wait=off",
            "-mon", "chardev=mon,mode=control",
        ]  # fmt: skip
        process = await trio.lowlevel.open_process(argv, pass_fds=[listener.fileno()])
    try:
        async with open_qmp(f"tcp://127.0.0.1:{port}") as qmp:
            assert (await qmp.query_status()).running
    finally:
        process.kill()
        await process.wait()


async def test_send_key_and_type_text(pc_qemu: QemuProcess) -> None:
    async with open_qmp(pc_qemu.qmp_address) as qmp:
        await qmp.send_key("ctrl-alt-delete")
        await qmp.send_key(["shift", "a"], hold_time=0.05)
        await qmp.send_keys(["esc", "ret"])
        await qmp.type_text("Hello, world!\n")
        with pytest.raises(ConfigError, match="unknown key"):
            await qmp.send_key("ctrl-nokey")
        # QEMU itself validates what it is sent
        with pytest.raises(QmpCommandError, match="nokey"):
            await qmp.execute("send-key", {"keys": [{"type": "qcode", "data": "nokey"}]})


async def test_an_expired_caller_does_not_break_the_connection(bare_qemu: QemuProcess) -> None:
    async with open_qmp(bare_qemu.qmp_address) as qmp:
        with trio.move_on_after(0):
            await qmp.query_status()
        with pytest.raises(VirtrioTimeoutError):
            await qmp.query_status(timeout=0)
        assert (await qmp.query_status()).running


async def test_an_event_before_the_greeting_is_published_and_the_connection_opens(
    tmp_path: Path,
) -> None:
    """QEMU resets a monitor to negotiation mode only when it handles the next client's
    connection, so an event emitted just before (the previous client's ``cont``) reaches the
    new client ahead of its greeting (seen in CI; an in-process server here, as the window is
    too short to hit at will). Nobody else got that event: it is published."""

    async def talk(conn: trio.socket.SocketType) -> None:
        await conn.send(
            b'{"timestamp": {"seconds": 7, "microseconds": 0}, "event": "RESUME"}\r\n' + GREETING
        )
        assert b"qmp_capabilities" in await conn.recv(1024)
        await conn.send(b'{"return": {}, "id": 1}\r\n')
        await conn.recv(1024)  # until the client hangs up

    vm_events: Fanout[QmpEvent] = Fanout(max_queue=16)
    with vm_events.subscribe() as listening:
        async with (
            in_process_qmp_server(tmp_path, talk) as address,
            open_qmp(address, connect_timeout=5, event_fanout=vm_events) as qmp,
        ):
            assert qmp.is_connected
            assert str(qmp.greeting.version) == "8.2.0"
            assert listening.receive_nowait() == QmpEvent("RESUME", {}, 7.0)
