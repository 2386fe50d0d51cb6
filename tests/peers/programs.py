"""Bare-metal test programs (tests/peers/programs/), built from Debian's cross compilers and
cached by source hash, and QEMU running one of them halted behind its gdbstub.

Each program prints ``virtrio bare-metal NAME: hello`` on its UART, fills ``pattern`` (4 KiB),
then loops for ever calling ``tick(n)`` (sets ``counter``), setting ``watched`` to n and printing
``poked N`` whenever a debugger writes a non-zero N into ``poked``::

    program = bare_metal_program("cortex-m3")     # or "x86_64"
    program.elf, program.symbols["tick"]          # Path, 0xc4 (Thumb bit cleared)
    target = gdb_qemu("x86_64")                   # QEMU -S with -kernel ELF, gdbstub, UART
    async with open_gdb(target.gdb_address) as gdb: ...

``python -m tests.peers.programs`` builds them all (scripts/setup.sh runs it).
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs
import pytest

from . import dies_with_tests, require_program, stop_process

__all__ = [
    "PROGRAMS",
    "BareMetalProgram",
    "GdbQemu",
    "HaltedQemu",
    "ProgramSpec",
    "bare_metal_program",
    "build_program",
    "gdb_qemu",
    "start_gdb_qemu",
    "start_halted_qemu",
]

SOURCES = Path(__file__).parent / "programs"
CACHE = Path(__file__).parent / "bin" / "programs"


@attrs.frozen
class ProgramSpec:
    """How to build one program and which QEMU runs it."""

    name: str
    compiler: str
    package: str
    nm: str
    flags: tuple[str, ...]
    sources: tuple[str, ...]
    qemu: str
    qemu_package: str
    qemu_args: tuple[str, ...]


_COMMON_FLAGS = ("-O1", "-g", "-ffreestanding", "-fno-tree-loop-distribute-patterns", "-nostdlib")

PROGRAMS: Mapping[str, ProgramSpec] = {
    "cortex-m3": ProgramSpec(
        "cortex-m3",
        "arm-none-eabi-gcc",
        "gcc-arm-none-eabi",
        "arm-none-eabi-nm",
        ("-mcpu=cortex-m3", "-mthumb", *_COMMON_FLAGS, "-nostartfiles"),
        ("cortex-m3/startup.c", "common/program.c"),
        "qemu-system-arm",
        "qemu-system-arm",
        # TI Stellaris LM3S6965: Cortex-M3, UART0 a PL011 at 0x4000C000
        ("-M", "lm3s6965evb", "-net", "none"),
    ),
    "x86_64": ProgramSpec(
        "x86_64",
        "gcc",
        "gcc",
        "nm",
        (
            "-m64",
            *_COMMON_FLAGS,
            "-fno-pic",
            "-fno-pie",
            "-no-pie",
            "-static",
            "-mno-red-zone",
            "-mgeneral-regs-only",
            "-fno-stack-protector",
            "-fcf-protection=none",
            "-Wl,--build-id=none",
        ),
        ("x86_64/boot.S", "common/program.c"),
        "qemu-system-x86_64",
        "qemu-system-x86",
        # a PVH ELF booted by -kernel; COM1 at 0x3f8
        ("-machine", "pc", "-accel", "tcg", "-m", "64", "-cpu", "qemu64"),
    ),
}


@attrs.frozen
class BareMetalProgram:
    """A built program: its ELF (with symbols), their addresses, and the QEMU that runs it."""

    name: str
    elf: Path
    #: Function and variable addresses from the ELF's symbol table (ARM's Thumb bit cleared).
    symbols: Mapping[str, int]
    #: The QEMU binary and machine arguments that run it (add ``-kernel ELF``).
    qemu: str
    qemu_args: tuple[str, ...]

    @property
    def banner(self) -> bytes:
        """What it prints on its UART first."""
        return f"virtrio bare-metal {self.name}: hello\n".encode()


def _digest(spec: ProgramSpec) -> str:
    h = hashlib.sha256(repr(attrs.astuple(spec)).encode())
    directory = SOURCES / spec.name
    for path in sorted([*directory.iterdir(), *(SOURCES / "common").iterdir()]):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _symbols(nm: str, elf: Path) -> dict[str, int]:
    out = subprocess.run([nm, str(elf)], check=True, capture_output=True, text=True).stdout
    symbols: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtBbDdRr":
            symbols[parts[2]] = int(parts[0], 16)
    return symbols


def build_program(name: str) -> BareMetalProgram:
    """Build ``name`` (``"cortex-m3"`` or ``"x86_64"``) unless the build for its current sources
    is cached; a missing compiler fails in CI and skips locally, with the package to install."""
    spec = PROGRAMS[name]
    compiler = require_program(spec.compiler, spec.package)
    nm = require_program(spec.nm, "binutils-arm-none-eabi" if "arm" in spec.nm else "binutils")
    out = CACHE / f"{name}-{_digest(spec)}"
    elf = out / f"{name}.elf"
    if not elf.exists():
        out.mkdir(parents=True, exist_ok=True)
        partial = out / f".{name}.elf.{os.getpid()}"
        argv = [
            compiler,
            *spec.flags,
            f"-I{SOURCES / name}",
            "-T",
            str(SOURCES / name / "link.ld"),
            *(str(SOURCES / s) for s in spec.sources),
            "-o",
            str(partial),
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"building the {name} test program failed:\n{result.stderr}")
        partial.rename(elf)  # atomic: a parallel build never sees half a file
    return BareMetalProgram(name, elf, _symbols(nm, elf), spec.qemu, spec.qemu_args)


@pytest.fixture
def bare_metal_program() -> Callable[[str], BareMetalProgram]:
    """``bare_metal_program("cortex-m3")`` builds (or takes from the cache) a test program."""
    return build_program


@attrs.frozen
class HaltedQemu:
    """QEMU halted at reset (-S): its gdbstub and its first UART on Unix sockets that exist
    before QEMU starts (connect at once)."""

    gdb_address: str
    serial_address: str
    process: subprocess.Popen[bytes]
    log: Path


@attrs.frozen
class GdbQemu(HaltedQemu):
    """A :class:`HaltedQemu` with a test program loaded."""

    program: BareMetalProgram


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    return sock


def start_gdb_qemu(program: BareMetalProgram, folder: Path) -> GdbQemu:
    """Start QEMU for ``program`` in ``folder``; the caller stops it (:func:`stop_process`)."""
    qemu = require_program(program.qemu, PROGRAMS[program.name].qemu_package)
    halted = start_halted_qemu([qemu, *program.qemu_args, "-kernel", str(program.elf)], folder)
    return GdbQemu(*attrs.astuple(halted, recurse=False), program)


def start_halted_qemu(argv: list[str], folder: Path) -> HaltedQemu:
    """Start ``argv`` (a QEMU binary and its machine) halted (-S), with its gdbstub and first
    UART on Unix sockets in ``folder`` that exist before it starts."""
    folder.mkdir(parents=True, exist_ok=True)
    gdb_sock = _listen(folder / "gdb.sock")
    serial_sock = _listen(folder / "serial.sock")
    argv = [
        *argv,
        "-nodefaults",
        "-display",
        "none",
        "-S",
        "-chardev",
        f"socket,id=gdb0,fd={gdb_sock.fileno()},server=on,wait=off",
        "-gdb",
        "chardev:gdb0",
        "-chardev",
        f"socket,id=serial0,fd={serial_sock.fileno()},server=on,wait=off",
        "-serial",
        "chardev:serial0",
    ]
    log = folder / "qemu.log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                dies_with_tests(argv),
                pass_fds=(gdb_sock.fileno(), serial_sock.fileno()),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
    finally:
        gdb_sock.close()
        serial_sock.close()
    return HaltedQemu(f"unix:{folder / 'gdb.sock'}", f"unix:{folder / 'serial.sock'}", process, log)


@pytest.fixture
def gdb_qemu(tmp_path: Path) -> Iterator[Callable[[str], GdbQemu]]:
    """``gdb_qemu("x86_64")``: QEMU halted at reset with that test program, its gdbstub at
    ``.gdb_address``, its UART at ``.serial_address``. Every one is stopped and reaped at
    teardown."""
    started: list[GdbQemu] = []

    def start(name: str) -> GdbQemu:
        target = start_gdb_qemu(build_program(name), tmp_path / f"qemu-{len(started)}")
        started.append(target)
        return target

    yield start
    for target in started:
        stop_process(target.process)


if __name__ == "__main__":
    for program_name in sys.argv[1:] or PROGRAMS:
        print(build_program(program_name).elf)
