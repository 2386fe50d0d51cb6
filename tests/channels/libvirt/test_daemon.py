"""Against a real libvirtd (tests/peers/libvirtd.py) running the demo guest under TCG."""

from __future__ import annotations

import re
import signal

import pytest
import trio

from tests.peers.libvirtd import LibvirtDaemon, LibvirtGuest, define_guest, qemu_processes
from virtrio.channels.libvirt import DomainNotFoundError, EventKind, open_connection
from virtrio.channels.qga import QgaCommandError
from virtrio.channels.qmp import QmpCommandError, open_qmp
from virtrio.channels.virtio_serial import discover_channels, open_virtio_serial
from virtrio.errors import ConnectionLostError
from virtrio.nurseries.host import HostUnavailableError, open_host
from virtrio.primitives import Backoff, ChannelState

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_libvirt_leftovers")]


async def test_qmp_and_qga_through_libvirt(libvirt_guest: LibvirtGuest) -> None:
    async with open_host(libvirt_guest.daemon.uri) as host:
        qmp, qga = host.qmp(libvirt_guest.name), host.qga(libvirt_guest.name)
        status = await qmp.query_status()
        assert (status.status, status.running) == ("running", True)
        assert (await qmp.query_version()).major >= 7
        with pytest.raises(QmpCommandError) as qmp_error:
            await qmp.execute("no-such-command")
        assert qmp_error.value.error_class == "CommandNotFound"

        await qga.ping()
        assert (await qga.osinfo())["id"] == "virtrio"
        result = await qga.shell("echo through-libvirt; exit 3", timeout=20)
        assert (result.stdout_text, result.exit_code) == ("through-libvirt\n", 3)
        with pytest.raises(QgaCommandError, match="guest-no-such"):
            await qga.execute("guest-no-such")


async def test_xml_discovery_matches_the_running_domain(libvirt_guest: LibvirtGuest) -> None:
    async with open_host(libvirt_guest.daemon.uri) as host:
        vm = host.domain(libvirt_guest.name)
        xml = await vm.xml()
        names = [c.name for c in await discover_channels(vm)]
        assert names == ["org.qemu.guest_agent.0", "org.virtrio.echo0", "org.virtrio.echo1"]
        assert xml.channel("org.qemu.guest_agent.0").state == "connected"
        assert all(c.type == "unix" and c.path for c in xml.channels)
        assert xml.spice is not None
        assert xml.spice.address == "127.0.0.1"
        assert xml.spice.port is not None
        assert xml.spice.uri == f"spice://127.0.0.1:{xml.spice.port}"
        assert [str(a) for a in xml.qmp_sockets] == [f"unix:{libvirt_guest.qmp_socket}"]
        # the discovered extra monitor answers like QMP through libvirt does
        async with open_qmp(xml.qmp_sockets[0]) as direct:
            assert await direct.query_status() == await host.qmp(libvirt_guest.name).query_status()


@pytest.mark.parametrize(
    ("port", "via"), [("org.virtrio.echo0", "libvirt"), ("org.virtrio.echo1", "socket")]
)
async def test_virtio_serial_echo_round_trip(
    libvirt_guest: LibvirtGuest, port: str, via: str
) -> None:
    async with open_host(libvirt_guest.daemon.uri) as host:
        vm = host.domain(libvirt_guest.name)
        async with await open_virtio_serial(vm, port, via=via) as channel:  # type: ignore[arg-type]
            await channel.send_all(b"hello\nworld\nprompt$ tail")
            assert await channel.read_line(timeout=10) == b"hello"
            assert await channel.read_until(re.compile(rb"\$ "), timeout=10) == b"world\nprompt$ "
            assert await channel.read_until(b"tail", timeout=10) == b"tail"
            payload = bytes(range(256)) * 64
            await channel.send_all(payload)
            got = b""
            with trio.fail_after(10):
                while len(got) < len(payload):
                    got += await channel.receive_some()
            assert got == payload


async def test_lifecycle_events_on_start_suspend_destroy(libvirtd: LibvirtDaemon) -> None:
    name = "vt-events"
    async with open_connection(libvirtd.uri) as conn:
        with conn.events([EventKind.LIFECYCLE], domain=name) as events:
            dom = await conn.call(conn.raw.createXML, define_guest(libvirtd, name), 0)
            try:
                await conn.call(dom.suspend)
                await conn.call(dom.resume)
            finally:
                await conn.call(dom.destroy)
            got = []
            with trio.fail_after(20):
                while not got or got[-1][0] != "STOPPED":
                    event = await events.receive()
                    got.append((event.event, event.detail))
            del dom
    assert ("STARTED", "BOOTED") in got
    assert ("SUSPENDED", "PAUSED") in got
    assert ("RESUMED", "UNPAUSED") in got
    assert got[-1] == ("STOPPED", "DESTROYED")
    assert got.index(("STARTED", "BOOTED")) < got.index(("SUSPENDED", "PAUSED"))
    assert qemu_processes(f"guest={name}") == []


async def test_daemon_restart_host_reconnects(libvirt_guest: LibvirtGuest) -> None:
    daemon = libvirt_guest.daemon
    backoff = Backoff(initial=0.05, maximum=0.5)
    async with open_host(daemon.uri, backoff=backoff, call_timeout=20) as host:
        qmp = host.qmp(libvirt_guest.name)
        assert (await qmp.query_status()).running
        with host.state_changes() as states:
            await trio.to_thread.run_sync(daemon.stop_libvirtd)
            with trio.fail_after(10):
                while (await states.receive()).state is not ChannelState.DISCONNECTED:
                    pass
            # a call during the outage waits up to its deadline, then names the problem
            with pytest.raises(HostUnavailableError, match="not connected"):
                await qmp.execute("query-status", timeout=0.3)
            await trio.to_thread.run_sync(daemon.start_libvirtd)
            # calls work again once the host nursery has reconnected on its own
            assert (await qmp.query_status()).running
            assert await host.qga(libvirt_guest.name).osinfo()
            seen = [host.state]
        assert seen == [ChannelState.CONNECTED]


def test_cli_through_the_daemon(
    libvirt_guest: LibvirtGuest, capsys: pytest.CaptureFixture[str]
) -> None:
    from virtrio.engine._cli import main

    uri, name = libvirt_guest.daemon.uri, libvirt_guest.name
    assert main(["libvirt", uri, "domains"]) == 0
    assert name in capsys.readouterr().out
    assert main(["libvirt", uri, "qmp", name, "query-status"]) == 0
    assert '"status": "running"' in capsys.readouterr().out
    assert main(["libvirt", uri, "qga", name, "guest-get-osinfo"]) == 0
    assert '"id": "virtrio"' in capsys.readouterr().out
    assert main(["libvirt", uri, "qga", name, "--shell", "echo cli; exit 4"]) == 4
    assert capsys.readouterr().out == "cli\n"
    assert main(["libvirt", uri, "channels", name]) == 0
    assert "org.virtrio.echo0\tunix\t" in capsys.readouterr().out


async def test_vm_nursery_attached_to_a_libvirt_domain(libvirt_guest: LibvirtGuest) -> None:
    from virtrio.nurseries import open_vm

    async with (
        open_host(libvirt_guest.daemon.uri) as host,
        open_vm(libvirt_guest.name, libvirt=host) as vm,
    ):
        # each channel's state is the domain's: known once queried (or told by an event)
        await vm.qga.wait_connected(timeout=20)
        await vm.qmp.wait_connected(timeout=20)
        assert vm.channel_states() == {"qmp": ChannelState.CONNECTED, "qga": ChannelState.CONNECTED}
        assert (await vm.qmp.query_status()).running
        assert (await vm.qga.shell("echo vm", timeout=20)).stdout_text == "vm\n"
        assert (await vm.domain.state()) == "running"
        with vm.events("STOP", "RESUME") as qmp_events:
            await vm.domain.call(lambda d: d.suspend())
            await vm.domain.call(lambda d: d.resume())
            with trio.fail_after(10):
                names = [(await qmp_events.receive()).name for _ in range(2)]
        assert names == ["STOP", "RESUME"]
        channel = await vm.open_virtio_serial("org.virtrio.echo0", via="libvirt")
        await channel.send_all(b"owned\n")
        assert await channel.read_line(timeout=10) == b"owned"
    # the VM nursery closed the channel it owned
    with pytest.raises(trio.ClosedResourceError):
        await channel.send_all(b"x")


async def test_the_documented_example_runs(
    libvirt_guest: LibvirtGuest, capsys: pytest.CaptureFixture[str]
) -> None:
    import runpy
    from pathlib import Path

    path = Path(__file__).parents[3] / "docs" / "examples" / "virtio_serial_echo.py"
    example = runpy.run_path(str(path))
    await example["main"](libvirt_guest.daemon.uri, libvirt_guest.name, "org.virtrio.echo1")
    out = capsys.readouterr().out
    assert "org.virtrio.echo1" in out
    assert out.splitlines()[-3:] == ["b'PING 1'", "b'PING 2'", "b'ready$ '"]


async def test_console_stream_through_libvirt(libvirt_guest: LibvirtGuest) -> None:
    from virtrio.channels.virtio_serial import StreamReader

    async with open_host(libvirt_guest.daemon.uri) as host:
        stream = await host.domain(libvirt_guest.name).open_console()
        async with StreamReader(stream, name="console") as console:
            await console.send_all(b"echo console-$((6 * 7))\n")
            assert b"console-42" in await console.read_until(b"console-42\r\n", timeout=10)


async def test_cli_streams_events_until_interrupted(libvirt_guest: LibvirtGuest) -> None:
    import signal
    import subprocess
    import sys

    from virtrio.channels.virtio_serial import StreamReader

    uri, name = libvirt_guest.daemon.uri, libvirt_guest.name
    argv = [sys.executable, "-m", "virtrio", "libvirt", uri, "events", name]
    proc = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = StreamReader(proc.stdout), StreamReader(proc.stderr)
        while await err.read_line(timeout=20) != b"# host connected":
            pass
        async with open_connection(uri) as conn:
            dom = await conn.lookup(name)
            await conn.call(dom.suspend)
            await conn.call(dom.resume)
            del dom
        assert await out.read_line(timeout=10) == f"{name} lifecycle SUSPENDED PAUSED".encode()
        assert await out.read_line(timeout=10) == f"{name} lifecycle RESUMED UNPAUSED".encode()
        proc.send_signal(signal.SIGINT)
        with trio.fail_after(10):
            assert await proc.wait() == 130
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_qmp_events_through_libvirt(libvirt_guest: LibvirtGuest) -> None:
    async with open_connection(libvirt_guest.daemon.uri) as conn:
        with conn.qmp_events(libvirt_guest.name, max_queue=8) as events:
            await conn.wait_qmp_registered(libvirt_guest.name)
            dom = await conn.lookup(libvirt_guest.name)
            await conn.call(dom.suspend)
            await conn.call(dom.resume)
            del dom
            with trio.fail_after(10):
                got = [await events.receive() for _ in range(2)]
        assert [e.name for e in got] == ["STOP", "RESUME"]
        assert got[0].timestamp > 1e9  # QEMU's wall-clock timestamp
        await conn.aclose()
        with pytest.raises(ConnectionLostError), conn.qmp_events(libvirt_guest.name):
            pass  # pragma: no cover


async def test_qmp_events_of_an_unknown_domain_end_with_its_error(
    libvirt_guest: LibvirtGuest,
) -> None:
    async with open_connection(libvirt_guest.daemon.uri) as conn:
        with conn.qmp_events("no-such-domain") as events:
            with pytest.raises(DomainNotFoundError):
                await conn.wait_qmp_registered("no-such-domain")
            with pytest.raises(DomainNotFoundError):
                await events.receive()


async def test_a_dropped_connection_is_seen_without_a_close_callback(
    libvirtd: LibvirtDaemon,
) -> None:
    """The connection's socket watch going tells it (no close callback registered: that is
    left to the first wait_closed)."""
    async with open_connection(libvirtd.uri, domain_events=False) as conn:
        assert conn._close_callback is None
        try:
            await trio.to_thread.run_sync(libvirtd.stop_libvirtd)
            with trio.fail_after(10):
                while conn.is_connected:
                    await trio.sleep(0.01)
        finally:
            await trio.to_thread.run_sync(libvirtd.start_libvirtd)
        assert isinstance(conn.closed_reason, ConnectionLostError)
        assert "connection lost: the connection dropped" in str(conn.closed_reason)
        with pytest.raises(ConnectionLostError):
            await conn.list_domains()


async def test_a_daemon_that_stops_answering_is_a_keepalive_timeout(
    libvirtd: LibvirtDaemon,
) -> None:
    async with open_connection(
        libvirtd.uri, domain_events=False, keepalive_interval=1, keepalive_count=1
    ) as conn:
        proc = libvirtd.procs["libvirtd"]
        proc.send_signal(signal.SIGSTOP)
        try:
            with trio.fail_after(15):
                while conn.is_connected:  # not wait_closed: no close callback, the watch alone
                    await trio.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGCONT)
        assert conn._close_callback is None
        assert "connection lost: keepalive timeout" in str(conn.closed_reason)
    # and the daemon still serves new connections
    async with open_connection(libvirtd.uri, domain_events=False) as conn:
        assert await conn.list_domains() is not None


async def test_wait_closed_registers_the_close_callback_once_and_close_drops_it(
    libvirtd: LibvirtDaemon,
) -> None:
    async with (
        open_connection(libvirtd.uri, domain_events=False) as conn,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(conn.wait_closed)
        nursery.start_soon(conn.wait_closed)
        with trio.fail_after(10):
            while not conn._close_callback:
                await trio.sleep(0.01)
        await conn.aclose()  # the waiters return: the nursery can close
    assert conn.closed_reason is not None
    assert "closed" in str(conn.closed_reason)
