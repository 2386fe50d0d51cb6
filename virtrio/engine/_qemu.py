"""Launching and owning a local QEMU: :func:`open_qemu`.

The listening sockets QEMU serves (QMP, the guest agent's port, echo ports) are created and
bound here, then handed to QEMU as file descriptors (``-chardev socket,fd=N,server=on``). So they
exist before QEMU starts, a client may connect at once — no waiting for a socket file to appear —
and the paths stay the same when QEMU is restarted.

::

    machine = QemuMachine.demo(build_guest(), echo_ports=("org.virtrio.echo0",))
    async with open_qemu(machine) as qemu:
        async with open_qmp(qemu.qmp_address) as qmp: ...
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import attrs
import trio

from virtrio.channels import Address
from virtrio.errors import ConfigError

from ._child import Child, die_with_parent, spawn_here
from ._guest import GuestImage

__all__ = [
    "AGENT_PORT",
    "QemuLaunch",
    "QemuMachine",
    "QemuProcess",
    "open_qemu",
    "plan_launch",
]

#: The virtio-serial port name qemu-ga listens on in the guest.
AGENT_PORT = "org.qemu.guest_agent.0"
_QBOOT = Path("/usr/share/qemu/qboot.rom")


@attrs.frozen
class QemuMachine:
    """What to launch: a TCG machine, optionally booting a kernel, with the given ports."""

    machine: str = "pc"
    accel: str = "tcg"
    memory_mib: int = 128
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    #: Add a virtio-serial port for the guest agent, served on ``qga.sock``.
    agent: bool = True
    #: Names of extra virtio-serial ports, each served on ``<name>.sock``.
    ports: tuple[str, ...] = ()
    #: Write the first serial port to ``console.log`` (else: no serial port).
    console_log: bool = True
    #: Also serve the first serial port on ``console.sock`` (a client sees it live; the log
    #: still gets everything).
    console_socket: bool = False
    extra_args: tuple[str, ...] = ()
    binary: str = "qemu-system-x86_64"
    #: Firmware to use instead of QEMU's default (SeaBIOS), e.g. qboot for a direct kernel boot.
    bios: Path | None = None
    #: A VGA display served by QEMU's Spice server on ``spice.sock`` (no password, images
    #: uncompressed); its address is ``port_addresses["spice"]``.
    spice: bool = False

    @classmethod
    def demo(
        cls, image: GuestImage, *, ports: Sequence[str] = (), **options: object
    ) -> QemuMachine:
        """The demo guest with its agent (and the given extra ports, e.g. echo ports).

        On ``-machine pc`` it boots through qboot when QEMU ships it: a minimal firmware that
        jumps straight to the ``-kernel`` image, where SeaBIOS spends CPU on a BIOS pass. With
        ``spice`` it keeps SeaBIOS: qboot leaves the VGA uninitialised, and the guest's text
        console would never reach the screen.
        """
        if options.get("machine", "pc") == "pc" and _QBOOT.exists() and not options.get("spice"):
            options.setdefault("bios", _QBOOT)
        return cls(
            kernel=image.kernel,
            initrd=image.initrd,
            append=image.cmdline,
            memory_mib=image.memory_mib,
            ports=tuple(ports),
            **options,  # type: ignore[arg-type]
        )

    def serial_ports(self) -> list[str]:
        """Every virtio-serial port name, agent first."""
        return ([AGENT_PORT] if self.agent else []) + list(self.ports)


@attrs.define
class QemuProcess:
    """A running QEMU and the addresses of the sockets it serves."""

    machine: QemuMachine
    workdir: Path
    process: Child
    qmp_address: Address
    #: Host socket per virtio-serial port name (the agent's is ``org.qemu.guest_agent.0``;
    #: the serial console's, with ``console_socket``, is ``console``).
    port_addresses: dict[str, Address]
    console_log: Path | None
    log: Path

    @property
    def qga_address(self) -> Address:
        """The guest agent's host socket.

        Raises:
            ConfigError: the machine has no agent port.
        """
        try:
            return self.port_addresses[AGENT_PORT]
        except KeyError:
            raise ConfigError("this QEMU was launched without a guest-agent port") from None

    @property
    def pid(self) -> int:
        """QEMU's process id."""
        return self.process.pid

    def kill(self) -> None:
        """Kill QEMU at once (SIGKILL): for testing what happens when it dies."""
        if self.process.returncode is None:
            self.process.kill()

    async def wait(self) -> int:
        """Wait for QEMU to exit; returns its exit status."""
        return await self.process.wait()

    def log_tail(self, limit: int = 2000) -> str:
        """The end of QEMU's own output (errors at startup end up here)."""
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""


def _listen(path: Path) -> socket.socket:
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    return sock


def _argv(
    machine: QemuMachine,
    qmp_fd: int,
    port_fds: dict[str, int],
    console: Path | None,
    console_fd: int | None = None,
    spice: Path | None = None,
) -> list[str]:
    argv = [
        machine.binary,
        "-machine", machine.machine,
        "-accel", machine.accel,
        "-m", str(machine.memory_mib),
        "-nodefaults",
        "-display", "none",
        "-no-user-config",
        "-chardev", f"socket,id=qmp0,fd={qmp_fd},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
    ]  # fmt: skip
    if machine.bios is not None:
        argv += ["-bios", str(machine.bios)]
    if machine.kernel is not None:
        argv += ["-kernel", str(machine.kernel), "-no-reboot"]
        if machine.initrd is not None:
            argv += ["-initrd", str(machine.initrd)]
        if machine.append:
            argv += ["-append", machine.append]
    if console_fd is not None:
        log = f",logfile={console}" if console is not None else ""
        argv += [
            "-chardev", f"socket,id=console0,fd={console_fd},server=on,wait=off{log}",
            "-serial", "chardev:console0",
        ]  # fmt: skip
    elif console is not None:
        argv += ["-serial", f"file:{console}"]
    if spice is not None:
        argv += [
            "-device", "VGA",
            "-spice", f"unix=on,addr={spice},disable-ticketing=on,image-compression=off",
        ]  # fmt: skip
    if port_fds:
        argv += ["-device", "virtio-serial,id=vser0"]
        for index, (name, fd) in enumerate(port_fds.items()):
            port = f"port{index}"
            argv += [
                "-chardev", f"socket,id={port},fd={fd},server=on,wait=off",
                "-device", f"virtserialport,bus=vser0.0,chardev={port},name={name},id={port}",
            ]  # fmt: skip
    return argv + list(machine.extra_args)


@attrs.define
class QemuLaunch:
    """Everything needed to start QEMU for a machine in a folder: the command line, the
    listening sockets to pass it, and the addresses they serve. Made by :func:`plan_launch`;
    start the process with any launcher (``open_qemu`` uses Trio's), then :meth:`close` the
    sockets on this side."""

    argv: list[str]
    sockets: list[socket.socket]
    qmp_address: Address
    port_addresses: dict[str, Address]
    console_log: Path | None
    log: Path

    @property
    def pass_fds(self) -> list[int]:
        """The descriptors QEMU must inherit."""
        return [s.fileno() for s in self.sockets]

    def close(self) -> None:
        """Close this side's copies of the listening sockets (QEMU keeps its own)."""
        for sock in self.sockets:
            sock.close()


def plan_launch(machine: QemuMachine, folder: Path) -> QemuLaunch:
    """Bind the machine's sockets in ``folder`` and build its command line."""
    folder.mkdir(parents=True, exist_ok=True)
    qmp = _listen(folder / "qmp.sock")
    sockets = [qmp]
    ports: dict[str, Address] = {}
    port_fds: dict[str, int] = {}
    try:
        for name in machine.serial_ports():
            path = folder / ("qga.sock" if name == AGENT_PORT else f"{name}.sock")
            sock = _listen(path)
            sockets.append(sock)
            ports[name] = Address.unix(path)
            port_fds[name] = sock.fileno()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    console = folder / "console.log" if machine.console_log else None
    console_fd = None
    if machine.console_socket:
        console_sock = _listen(folder / "console.sock")
        sockets.append(console_sock)
        ports["console"] = Address.unix(folder / "console.sock")
        console_fd = console_sock.fileno()
    spice = None
    if machine.spice:
        # QEMU's Spice server binds its socket itself (it takes no descriptor): the channel's
        # supervisor retries until QEMU has created it
        spice = folder / "spice.sock"
        spice.unlink(missing_ok=True)
        ports["spice"] = Address.unix(spice)
    argv = _argv(machine, qmp.fileno(), port_fds, console, console_fd, spice)
    return QemuLaunch(
        argv, sockets, Address.unix(folder / "qmp.sock"), ports, console, folder / "qemu.log"
    )


@asynccontextmanager
async def open_qemu(
    machine: QemuMachine,
    *,
    workdir: str | os.PathLike[str] | None = None,
    stop_timeout: float = 5.0,
) -> AsyncIterator[QemuProcess]:
    """Start QEMU for ``machine``; on exit stop it (SIGTERM, then SIGKILL after
    ``stop_timeout``) and reap it.

    Sockets and logs go in ``workdir`` (default: a new temporary directory, removed on exit).
    Starting again with the same ``workdir`` serves the same socket paths.

    Raises:
        ConfigError: the QEMU binary is not installed.
    """
    with tempfile.TemporaryDirectory(prefix="virtrio-qemu-") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        launch = plan_launch(machine, folder)
        try:
            if shutil.which(launch.argv[0]) is None:  # (under setpriv it would only exit 127)
                raise FileNotFoundError(launch.argv[0])
            with launch.log.open("wb") as log_file:
                # forked in this thread under a death signal: QEMU dies with this process,
                # even a SIGKILLed one (see virtrio.engine._child)
                process = await spawn_here(
                    die_with_parent(launch.argv),
                    pass_fds=launch.pass_fds,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
        except FileNotFoundError:
            raise ConfigError(
                f"{machine.binary} not found: apt-get install qemu-system-x86"
            ) from None
        finally:
            launch.close()
        qemu = QemuProcess(
            machine,
            folder,
            process,
            launch.qmp_address,
            launch.port_addresses,
            launch.console_log,
            launch.log,
        )
        try:
            yield qemu
        finally:
            with trio.CancelScope(shield=True):
                await _stop(process, stop_timeout)


class _Stoppable(Protocol):
    """What :func:`_stop` needs of a process (a :class:`~virtrio.engine._child.Child`)."""

    @property
    def returncode(self) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    async def wait(self) -> int: ...


async def _stop(process: _Stoppable, timeout: float) -> None:
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            process.kill()
    await process.wait()
