"""A real qemu-ga listening on a host Unix socket: a fast guest-agent peer (ready in ~3 ms).

It runs commands on the host, so it is confined: it runs as ``nobody``, its socket lives in a
directory only that user can enter, and the RPCs that act on the whole machine (shutdown, time,
fsfreeze, passwords, ...) are blocked.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.peers import dies_with_tests, require_program, stop_process
from virtrio.channels import Address

BLOCKED_RPCS = (
    "guest-shutdown,guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-set-time,"
    "guest-set-user-password,guest-suspend-disk,guest-suspend-ram,guest-suspend-hybrid,"
    "guest-set-vcpus,guest-set-memory-blocks,guest-fstrim,guest-ssh-add-authorized-keys"
)


@attrs.define
class HostAgent:
    """A qemu-ga process on the host and its socket; :meth:`restart` for reconnect tests."""

    address: Address
    #: A directory the agent (user nobody) may write to, for file tests.
    scratch: Path
    process: subprocess.Popen[bytes]
    argv: list[str] = attrs.field(factory=list)

    def restart(self) -> None:
        """Kill the agent (if running), reap it, and start it again on the same socket."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        Path(self.address.path).unlink(missing_ok=True)
        self.process = _start(self.argv, Path(self.address.path))


@pytest.fixture
def host_qga() -> Iterator[HostAgent]:
    """A confined qemu-ga on a Unix socket (see the module docstring)."""
    binary = require_program("qemu-ga", "qemu-guest-agent")
    nobody = pwd.getpwnam("nobody")
    folder = Path(tempfile.mkdtemp(prefix="virtrio-qga-"))
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    folder.chmod(0o700)
    socket_path = folder / "qga.sock"
    argv = [
        "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
        binary, "-m", "unix-listen", "-p", str(socket_path), "-t", str(folder),
        "-f", str(folder / "qga.pid"), "-b", BLOCKED_RPCS,
    ]  # fmt: skip
    agent = HostAgent(Address.unix(socket_path), folder, _start(argv, socket_path), argv)
    try:
        yield agent
    finally:
        stop_process(agent.process)
        shutil.rmtree(folder, ignore_errors=True)


def _start(argv: list[str], socket_path: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(dies_with_tests(argv), stdin=subprocess.DEVNULL)
    # qemu-ga binds its socket ~3 ms after start; a connect before that is refused, so wait for
    # it to appear (bounded; this is the one place a peer gives no other signal).
    for _ in range(500):
        if socket_path.exists() or process.poll() is not None:
            break
        time.sleep(0.01)
    if not socket_path.exists():
        stop_process(process)
        pytest.fail(f"qemu-ga did not create {socket_path} (exit status {process.poll()})")
    return process
