"""One QEMU process of an instance and its three connections (QMP, GDB, console), from start
to reaped. An instance replaces its run on power cycles and program starts."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs
import trio

from virtrio.channels import Address, open_stream
from virtrio.channels.gdb import GdbClient, open_gdb
from virtrio.channels.qmp import QmpClient, open_qmp
from virtrio.engine._child import Child, die_with_parent, spawn_here
from virtrio.engine._qemu import _listen, _stop
from virtrio.errors import ConnectError, ConnectionLostError, VirtrioError
from virtrio.primitives import open_service_nursery

from ._console import ConsoleBuffer, pump_console
from ._limits import AppliedLimits, ResourceLimitExceededError
from ._snapshots import incoming_from_file
from ._types import BackendExitedError, BackendStartError, BackendUnavailableError

__all__ = ["QemuRun", "RunSpec", "serve_run"]


@attrs.frozen
class RunSpec:
    """How to start one QEMU: its arguments (less the sockets, added here) and deadlines."""

    argv: tuple[str, ...]
    console_index: int
    workdir: Path
    log: Path
    connect_timeout: float = 10.0
    call_timeout: float = 10.0
    stop_grace: float = 3.0
    #: Start from a state saved by migration to this file (``-incoming defer``, then
    #: ``migrate-incoming``; GDB connects only after it: QEMU aborts on a debugger stop
    #: while in ``inmigrate``).
    incoming: Path | None = None
    #: the instance's resource limits, applied to the process (None: none)
    limits: AppliedLimits | None = None


@attrs.define(eq=False)
class QemuRun:
    """A started QEMU: its process and connections; ``stop`` asks the run to end."""

    process: Child
    log: Path
    qmp: QmpClient | None = None
    gdb: GdbClient | None = None
    stop: trio.Event = attrs.field(factory=trio.Event)
    exited: trio.Event = attrs.field(factory=trio.Event)
    #: the console socket's sending half (QEMU's serial chardev reads what is written to it)
    console_input: trio.abc.SendStream | None = None
    _input_lock: trio.Lock = attrs.field(factory=trio.Lock)
    #: set (before ``exited``) when a resource limit killed this QEMU
    limit_error: ResourceLimitExceededError | None = None

    async def write_console(self, data: bytes) -> None:
        """Send ``data`` to the console UART (as if typed on it).

        Raises:
            BackendExitedError: QEMU is gone (or its console with it).
        """
        if self.console_input is None or self.exited.is_set():
            raise self.failure()
        async with self._input_lock:
            try:
                await self.console_input.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                raise self.failure() from None

    def failure(self) -> BackendExitedError:
        """The error for a call that finds this QEMU gone (a resource limit's, if one
        killed it)."""
        if self.limit_error is not None:
            return self.limit_error
        return BackendExitedError(
            f"QEMU exited (status {self.process.returncode}): {_tail(self.log)}", backend="qemu"
        )


def _tail(log: Path, limit: int = 600) -> str:
    try:
        return log.read_text(errors="replace")[-limit:].strip() or "(no output)"
    except FileNotFoundError:
        return "(no log)"


async def serve_run(
    spec: RunSpec,
    console: ConsoleBuffer,
    on_gdb: Callable[[GdbClient], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[QemuRun] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start QEMU (halted: ``-S``), connect the console, QMP and GDB, report the run, and keep
    it until ``run.stop`` is set or QEMU exits; then quit it (QMP ``quit``, then SIGTERM, then
    SIGKILL after the grace) and reap it, also when cancelled.

    Raises:
        BackendUnavailableError: the QEMU binary is missing.
        BackendStartError: QEMU did not start or its sockets did not answer (with its log).
    """
    folder = spec.workdir
    sockets = [_listen(folder / name) for name in ("qmp.sock", "gdb.sock", "console.sock")]
    qmp_fd, gdb_fd, con_fd = (s.fileno() for s in sockets)
    # wait=on for the console: QEMU accepts it before it runs anything, so no output is lost
    argv = [
        *spec.argv,
        "-chardev", f"socket,id=qmp0,fd={qmp_fd},server=on,wait=off",
        "-mon", "chardev=qmp0,mode=control",
        "-chardev", f"socket,id=gdb0,fd={gdb_fd},server=on,wait=off",
        "-gdb", "chardev:gdb0",
        "-chardev", f"socket,id=con0,fd={con_fd},server=on,wait=on",
        *["-serial", "null"] * spec.console_index,
        "-serial", "chardev:con0",
        "-S",
        *(["-incoming", "defer"] if spec.incoming is not None else []),
    ]  # fmt: skip
    try:
        if shutil.which(argv[0]) is None:
            raise FileNotFoundError(argv[0])
        if spec.limits is not None:
            argv = spec.limits.wrap(argv)
        with spec.log.open("ab") as log:
            process = await spawn_here(
                die_with_parent(argv),
                pass_fds=[s.fileno() for s in sockets],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
    except FileNotFoundError:
        raise BackendUnavailableError(
            f"{argv[0]} not found: apt-get install qemu-system-arm qemu-system-x86", backend="qemu"
        ) from None
    finally:
        for sock in sockets:
            sock.close()
    run = QemuRun(process, spec.log)
    try:
        async with open_service_nursery() as nursery:
            nursery.start_soon(_watch_exit, run, spec.limits)
            try:
                await _connect(run, spec, console, on_gdb, nursery, task_status)
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process, spec.stop_grace)
            if run.limit_error is None and spec.limits is not None:
                run.limit_error = spec.limits.verdict(process.returncode)
            run.exited.set()


async def _watch_exit(run: QemuRun, limits: AppliedLimits | None) -> None:
    await run.process.wait()
    if limits is not None:
        run.limit_error = limits.verdict(run.process.returncode)
    run.exited.set()
    run.stop.set()


async def _connect(
    run: QemuRun,
    spec: RunSpec,
    console: ConsoleBuffer,
    on_gdb: Callable[[GdbClient], Awaitable[None]],
    nursery: trio.Nursery,
    task_status: trio.TaskStatus[QemuRun],
) -> None:
    folder = spec.workdir
    started = False
    try:
        stream = await open_stream(
            Address.unix(folder / "console.sock"), connect_timeout=spec.connect_timeout
        )
        run.console_input = stream
        nursery.start_soon(pump_console, stream, console)
        async with open_qmp(
            Address.unix(folder / "qmp.sock"),
            connect_timeout=spec.connect_timeout,
            call_timeout=spec.call_timeout,
        ) as qmp:
            run.qmp = qmp
            if spec.incoming is not None:
                await incoming_from_file(qmp, spec.incoming)
            async with open_gdb(
                Address.unix(folder / "gdb.sock"),
                connect_timeout=spec.connect_timeout,
                call_timeout=spec.call_timeout,
                pipeline=True,  # QEMU's system-mode stub never waits for an ack
            ) as gdb:
                run.gdb = gdb
                await on_gdb(gdb)
                task_status.started(run)
                started = True
                await run.stop.wait()
            # GDB hangs up first: the stub would answer quit with a W packet nobody asked for
            if not run.exited.is_set():
                await _quit(qmp, spec.stop_grace)
    except (ConnectError, ConnectionLostError, OSError) as exc:
        if not started:
            with trio.move_on_after(spec.stop_grace):
                await run.exited.wait()
            if run.limit_error is not None:
                raise run.limit_error from None
            raise BackendStartError(
                f"QEMU did not start ({exc}): {_tail(run.log)}", backend="qemu"
            ) from None
        if not run.stop.is_set():
            raise


async def _quit(qmp: QmpClient, grace: float) -> None:
    with trio.move_on_after(grace):
        # the socket closes under the reply; the process is reaped either way
        with contextlib.suppress(VirtrioError):
            await qmp.execute("quit", timeout=grace)
