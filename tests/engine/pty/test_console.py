"""A VM's serial console as a session: the demo guest's shell on ttyS0 through a QEMU chardev
socket (``-serial unix:PATH,server=on,wait=off``), or through libvirt's console stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.engine.pty.helpers import read_to_exit, read_until
from tests.peers import require_program
from tests.peers.libvirtd import LibvirtGuest
from virtrio.channels.pty import Exit, PtyRequestError, open_pty_client
from virtrio.channels.qmp import open_qmp
from virtrio.engine.guest import QemuMachine, find_guest, open_qemu
from virtrio.engine.pty import PtyDaemon
from virtrio.engine.pty._consoles import parse_libvirt_console
from virtrio.errors import ConfigError


@pytest.mark.slow
async def test_a_vm_serial_console_is_a_session(pty_daemon: PtyDaemon, tmp_path: Path) -> None:
    require_program("qemu-system-x86_64", "qemu-system-x86")
    image = find_guest()
    if image is None:
        pytest.fail("the demo guest is not built: run `make test` (or `virtrio guest build`)")
    serial = tmp_path / "serial.sock"
    machine = QemuMachine.demo(
        image,
        agent=False,
        console_log=False,
        extra_args=("-serial", f"unix:{serial},server=on,wait=off"),
    )
    async with open_qemu(machine, workdir=tmp_path / "qemu") as qemu:
        async with open_qmp(qemu.qmp_address):  # QEMU is up: its chardevs exist
            pass
        async with open_pty_client(pty_daemon.socket_path) as client:
            sid = await client.create(console=f"unix:{serial}", cols=100, rows=30)
            [info] = await client.list()
            assert (info.kind, info.pid, info.command) == ("console", None, f"unix:{serial}")
            await client.attach(sid)
            await read_until(client, sid, b"virtrio-guest: ready", timeout=90)
            await client.input(sid, b"echo $((40 + 2))-from-the-guest\n")
            await read_until(client, sid, b"42-from-the-guest", timeout=30)
            with pytest.raises(PtyRequestError, match="no process to signal") as info_:
                await client.signal(sid, "INT")
            assert info_.value.code == "unsupported"
            await client.resize(sid, 120, 40)  # only the emulated screen changes
            await client.kill(sid)  # closes the console socket
            assert (await read_to_exit(client, sid))[1] == Exit(sid, None, None)
            with trio.fail_after(5):
                sid = await client.create(console=f"unix:{serial}")  # the console is free again
            await client.attach(sid)
            await client.input(sid, b"echo again-$((1 + 1))\n")
            await read_until(client, sid, b"again-2", timeout=30)
            qemu.kill()  # the VM going away ends the session
            assert (await read_to_exit(client, sid))[1] == Exit(sid, None, None)


@pytest.mark.parametrize(
    ("console", "parsed"),
    [
        ("libvirt:qemu:///system#web1", ("qemu:///system", "web1", None)),
        (
            "libvirt:qemu+ssh://root@h/system#web1/serial0",
            ("qemu+ssh://root@h/system", "web1", "serial0"),
        ),
    ],
)
def test_libvirt_console_addresses(console: str, parsed: tuple[str, str, str | None]) -> None:
    assert parse_libvirt_console(console) == parsed


@pytest.mark.parametrize(
    "console", ["libvirt:qemu:///system", "libvirt:#web1", "libvirt:qemu:///system#"]
)
def test_bad_libvirt_console_addresses(console: str) -> None:
    with pytest.raises(ConfigError, match=r"expected libvirt:URI#DOMAIN\[/DEVICE\]"):
        parse_libvirt_console(console)


@pytest.mark.slow
async def test_a_libvirt_console_is_a_session(
    pty_daemon: PtyDaemon, libvirt_guest: LibvirtGuest
) -> None:
    console = f"libvirt:{libvirt_guest.daemon.uri}#{libvirt_guest.name}"
    async with open_pty_client(pty_daemon.socket_path) as client:
        sid = await client.create(console=console)
        await client.attach(sid)
        await client.input(sid, b"echo $((40 + 2))-through-libvirt\n")
        await read_until(client, sid, b"42-through-libvirt", timeout=30)
        await client.kill(sid)
        assert (await read_to_exit(client, sid))[1] == Exit(sid, None, None)
        with pytest.raises(PtyRequestError, match="nosuchdomain") as info:
            await client.create(console=f"libvirt:{libvirt_guest.daemon.uri}#nosuchdomain")
        assert info.value.code == "spawn_failed"
