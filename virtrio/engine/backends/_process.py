"""Emulator processes that announce readiness on their output (Renode, SkyEye): start one,
wait for its line, keep its output, and always stop and reap it."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import trio

from virtrio.engine._qemu import _stop

from ._board import NodeConfig
from ._types import BackendStartError, BackendUnavailableError, Capabilities, Capability

__all__ = [
    "GDB_DEBUGGED",
    "ExternalBackend",
    "find_program",
    "free_tcp_port",
    "open_announcing_process",
    "read_until",
]

#: What an emulator debugged through its own GDB server offers (less what it lacks).
GDB_DEBUGGED = frozenset(
    {
        Capability.POWER,
        Capability.PAUSE,
        Capability.PROGRAM_ELF,
        Capability.PROGRAM_RAW,
        Capability.START_AT_ENTRY,
        Capability.BREAKPOINTS,
        Capability.WATCHPOINTS,
        Capability.REGISTERS,
        Capability.MEMORY,
        Capability.STEP,
        Capability.CONSOLE,
    }
)


InstanceT = TypeVar("InstanceT")


class ExternalBackend(Generic[InstanceT]):
    """The settings of a backend that runs an emulator found on PATH (or at ``binary``), and the
    shape its instances open with: check the node, find the program, make the work dir."""

    name = "external"
    #: The emulator's program name on PATH.
    program: ClassVar[str] = ""
    #: How to get the emulator, said when it is not found.
    install_hint: ClassVar[str] = ""

    def __init__(
        self,
        *,
        binary: str | None = None,
        connect_timeout: float = 30.0,
        call_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.binary = binary
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.stop_grace = stop_grace

    def _capabilities(
        self, lacks: dict[Capability, str], summary: str, *, has_uart: bool | None
    ) -> Capabilities:
        caps = Capabilities(
            self.name, GDB_DEBUGGED - set(lacks), lacks, tested=False, summary=summary
        )
        if has_uart is False:
            caps = caps.without(Capability.CONSOLE, "the node has no uart peripheral")
        return caps

    def check_node(self, node: NodeConfig) -> None:
        """Raise :class:`BoardConfigError` naming what this adapter cannot model."""
        raise NotImplementedError

    def open_instance(
        self, node: NodeConfig, *, instance_id: str, workdir: Path
    ) -> AbstractAsyncContextManager[InstanceT]:
        """An instance of ``node`` in its own emulator process, stopped and reaped on exit.

        Raises:
            BoardConfigError: the node asks for what this adapter cannot model.
            ConfigError: the emulator is not installed (the message says how to get it).
        """
        return self._open(node, instance_id, Path(workdir))

    def _open(
        self, node: NodeConfig, instance_id: str, workdir: Path
    ) -> AbstractAsyncContextManager[InstanceT]:
        raise NotImplementedError

    async def _prepare(self, node: NodeConfig, workdir: Path) -> str:
        """Check ``node``, find the emulator and make ``workdir``; returns the program's path."""
        self.check_node(node)
        binary = find_program(self.binary, self.program, backend=self.name, hint=self.install_hint)
        await trio.Path(workdir).mkdir(parents=True, exist_ok=True)
        return binary


def find_program(configured: str | None, name: str, *, backend: str, hint: str) -> str:
    """The emulator's path: the configured one, else ``name`` on PATH.

    Raises:
        BackendUnavailableError: not found (the message says how to install it; a
            ConfigError too).
    """
    candidate = configured or name
    found = shutil.which(candidate)
    if found is None:
        where = (
            f"{candidate!r} (from the backend's binary= setting)"
            if configured
            else f"{name!r} on PATH"
        )
        raise BackendUnavailableError(f"{where} not found; {hint}", backend=backend)
    return found


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 free right now (for a program that takes a port number)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_until(
    stream: trio.abc.ReceiveStream, marker: bytes, *, timeout: float, what: str, backend: str
) -> tuple[bytes, bytes]:
    """Read ``stream`` until ``marker`` appears; returns (output up to and including the line
    with it, what came after).

    Raises:
        BackendStartError: the stream ended, or ``timeout`` passed, first.
    """
    data = b""
    with trio.move_on_after(timeout):
        while marker not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise BackendStartError(
                    f"{what} exited before it was ready: {data[-600:]!r}", backend=backend
                )
            data += chunk
        end = data.find(b"\n", data.find(marker))
        end = len(data) if end < 0 else end + 1
        return data[:end], data[end:]
    raise BackendStartError(f"{what} not ready after {timeout} s: {data[-600:]!r}", backend=backend)


@asynccontextmanager
async def open_announcing_process(
    argv: Sequence[str], *, cwd: Path, grace: float, backend: str
) -> AsyncIterator[trio.Process]:
    """Start ``argv`` with its output on a pipe (stdout and stderr together); on exit stop it
    (SIGTERM, SIGKILL after ``grace``) and reap it, also when cancelled.

    Raises:
        BackendUnavailableError: the program could not be started.
    """
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        raise BackendUnavailableError(f"cannot start {argv[0]}: {exc}", backend=backend) from None
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process, grace)
            if process.stdout is not None:
                await process.stdout.aclose()
