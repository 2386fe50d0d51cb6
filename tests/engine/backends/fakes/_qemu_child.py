"""What both fakes share: start the QEMU that plays the emulated machine (killed with its
parent, via PR_SET_PDEATHSIG), with listening sockets handed over as file descriptors."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1
#: The QEMU machine that stands in for whatever board the fake is asked for.
MACHINE = os.environ.get("FAKE_EMULATOR_QEMU_MACHINE", "lm3s6965evb")


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def qemu_argv(program: tuple[str, int | None] | None, gdb_fd: int, serial: str) -> list[str]:
    """QEMU halted (-S) with ``program`` (an ELF path, or a raw image and its address), the
    gdbstub on ``gdb_fd`` and the first UART on chardev spec ``serial``."""
    argv = ["qemu-system-arm", "-M", MACHINE, "-nodefaults", "-display", "none", "-S"]
    argv += ["-net", "none", "-chardev", f"socket,id=gdb0,fd={gdb_fd},server=on,wait=off"]
    argv += ["-gdb", "chardev:gdb0", "-serial", serial]
    if program is not None:
        path, address = program
        if address is None:
            argv += ["-kernel", path]
        else:
            argv += ["-device", f"loader,file={path},addr={address:#x},force-raw=on"]
    return argv


def start_qemu(argv: list[str], fds: list[int], log: str) -> subprocess.Popen[bytes]:
    """Start QEMU (it dies if the fake does)."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=_die_with_parent,
        )
