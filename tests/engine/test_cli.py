"""The ``virtrio`` command line, run as a user would, against real peers."""

from __future__ import annotations

import json
import subprocess
import sys

import trio

from tests.peers.qga import HostAgent
from virtrio.engine.guest import QemuProcess


async def virtrio(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "virtrio", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_help_lists_the_commands() -> None:
    done = await virtrio("--help")
    assert done.returncode == 0
    for command in ("qmp", "qga", "guest", "demo"):
        assert command in done.stdout.decode()


async def test_qmp_command(bare_qemu: QemuProcess) -> None:
    done = await virtrio("qmp", str(bare_qemu.qmp_address), "query-status")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "running"
    done = await virtrio("qmp", str(bare_qemu.qmp_address), "qom-list", '{"path": "/machine"}')
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


async def test_qmp_errors_are_one_clear_line(bare_qemu: QemuProcess) -> None:
    done = await virtrio("qmp", str(bare_qemu.qmp_address), "no-such-command")
    assert done.returncode == 1
    assert done.stderr.decode() == (
        "virtrio: error: no-such-command: CommandNotFound: "
        "The command no-such-command has not been found\n"
    )
    done = await virtrio("qmp", str(bare_qemu.qmp_address), "query-status", "[1]")
    assert done.returncode == 1
    assert "JSON-ARGS must be a JSON object" in done.stderr.decode()
    done = await virtrio("qmp", "unix:/nonexistent/qmp.sock", "query-status")
    assert done.returncode == 1
    assert "cannot connect to unix:/nonexistent/qmp.sock" in done.stderr.decode()


async def test_qga_commands(host_qga: HostAgent) -> None:
    address = str(host_qga.address)
    done = await virtrio("qga", address, "ping")
    assert done.returncode == 0, done.stderr
    assert b"answered in" in done.stdout
    done = await virtrio("qga", address, "info")
    assert done.stdout.startswith(b"qemu-ga 7.")
    done = await virtrio("qga", address, "exec", "--", "sh", "-c", "echo out; echo err >&2; exit 4")
    assert (done.returncode, done.stdout, done.stderr) == (4, b"out\n", b"err\n")
    done = await virtrio("qga", address, "exec", "--", "sh", "-c", "kill -TERM $$")
    assert done.returncode == 128 + 15
    done = await virtrio("qga", address, "exec")
    assert done.returncode == 1
    assert b"exec needs a command" in done.stderr


async def test_guest_path() -> None:
    done = await virtrio("guest", "path")
    assert done.returncode == 0, done.stderr
    kernel, initrd = done.stdout.decode().split()
    assert kernel.endswith("vmlinux")
    assert initrd.endswith("initrd.cpio")
