"""Differential: at the same stop, virtrio's client and GNU gdb (Debian's gdb-multiarch, over
the same QEMU gdbstub) read the same registers and the same memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.peers import require_program
from tests.peers.programs import GdbQemu
from virtrio.channels.gdb import open_gdb

StartQemu = Callable[[str], GdbQemu]
SP = {"x86_64": "rsp", "cortex-m3": "sp"}


def _raw_registers(gdb_output: str) -> dict[str, int]:
    """The registers of ``maint print raw-registers`` (name and raw value columns)."""
    values: dict[str, int] = {}
    for line in gdb_output.splitlines():
        parts = line.split()
        if len(parts) >= 7 and parts[0] != "''" and parts[-1].startswith("0x"):
            values[parts[0]] = int(parts[-1], 16)
    return values


async def _gdb_batch(address: str, commands: list[str]) -> str:
    gdb = require_program("gdb-multiarch", "gdb-multiarch")
    argv = [gdb, "-batch", "-nx", "-ex", f"target remote {address.removeprefix('unix:')}"]
    for command in commands:
        argv += ["-ex", command]
    with trio.fail_after(60):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True)
    return result.stdout.decode()


@pytest.mark.parametrize("arch", ["x86_64", "cortex-m3"])
async def test_same_registers_and_memory_as_gdb(
    gdb_qemu: StartQemu, arch: str, tmp_path: Path
) -> None:
    target = gdb_qemu(arch)
    symbols = target.program.symbols
    regions = {"pattern": (symbols["pattern"], 4096), "counter": (symbols["counter"], 4)}
    async with open_gdb(target.gdb_address) as gdb:
        await gdb.set_breakpoint(symbols["tick"])
        for _ in range(3):  # the third call of tick: counter is 2
            await gdb.continue_()
            await gdb.wait_stop(timeout=30)
        ours = await gdb.read_registers()
        regions["stack"] = (ours[SP[arch]], 32)  # within RAM on both
        our_memory = {
            name: await gdb.read_memory(address, size) for name, (address, size) in regions.items()
        }
        await gdb.remove_breakpoint(symbols["tick"])
    # the stub keeps the target halted when we hang up: gdb finds it at the same stop
    dumps = {name: tmp_path / f"{name}.bin" for name in regions}
    output = await _gdb_batch(
        target.gdb_address,
        [
            "maint print raw-registers",
            *(
                f"dump binary memory {dumps[name]} {address:#x} {address + size:#x}"
                for name, (address, size) in regions.items()
            ),
        ],
    )
    theirs = _raw_registers(output)
    assert theirs, output
    assert set(theirs) == set(ours)
    assert theirs == ours
    assert int.from_bytes(our_memory["counter"], "little") == 2
    for name in regions:
        assert dumps[name].read_bytes() == our_memory[name], name
