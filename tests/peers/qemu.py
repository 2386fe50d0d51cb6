"""Real QEMU peers: a bare ``-machine none`` QEMU for fast QMP tests, a ``pc`` machine for
input commands, and the demo guest booted once per session for the guest agent."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import attrs
import pytest

from tests.peers import dies_with_tests, require_program, stop_process
from virtrio.channels import Address
from virtrio.engine.guest import (
    QemuMachine,
    QemuProcess,
    find_guest,
    open_qemu,
    plan_launch,
)

#: A QEMU that runs no guest code: QMP only, ready in ~30 ms.
BARE = QemuMachine(machine="none", agent=False, console_log=False)
#: A PC with its PS/2 keyboard, halted before the firmware runs (-S): input commands work.
PC = QemuMachine(machine="pc", memory_mib=64, agent=False, console_log=False, extra_args=("-S",))


@pytest.fixture
def qemu_binary() -> str:
    """The QEMU binary (fails in CI, skips locally, when it is not installed)."""
    return require_program("qemu-system-x86_64", "qemu-system-x86")


@pytest.fixture
async def bare_qemu(qemu_binary: str, tmp_path: Path) -> AsyncIterator[QemuProcess]:
    """A running ``-machine none`` QEMU; its QMP socket is ``bare_qemu.qmp_address``."""
    async with open_qemu(BARE, workdir=tmp_path / "qemu") as qemu:
        yield qemu


@pytest.fixture
async def pc_qemu(qemu_binary: str, tmp_path: Path) -> AsyncIterator[QemuProcess]:
    """A stopped ``-machine pc`` QEMU with a keyboard (for send-key and friends)."""
    async with open_qemu(PC, workdir=tmp_path / "qemu") as qemu:
        yield qemu


@attrs.frozen
class BootedGuest:
    """The demo guest running under QEMU, shared by a whole session."""

    qmp_address: Address
    qga_address: Address
    echo_address: Address
    console_log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def demo_guest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BootedGuest]:
    """The demo guest booting under TCG (its agent answers ~6.5 s after start; connect with a
    generous timeout). Shared by the session: tests must leave it running."""
    require_program("qemu-system-x86_64", "qemu-system-x86")
    image = find_guest()
    if image is None:
        pytest.fail("the demo guest is not built: run `make test` (or `virtrio guest build`)")
    machine = QemuMachine.demo(image, ports=("org.virtrio.echo0",))
    launch = plan_launch(machine, tmp_path_factory.mktemp("guest"))
    with launch.log.open("wb") as log:
        process = subprocess.Popen(
            dies_with_tests(launch.argv),
            pass_fds=launch.pass_fds,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    launch.close()
    assert launch.console_log is not None
    try:
        yield BootedGuest(
            launch.qmp_address,
            launch.port_addresses["org.qemu.guest_agent.0"],
            launch.port_addresses["org.virtrio.echo0"],
            launch.console_log,
            process,
        )
    finally:
        stop_process(process)
