"""docs/examples/gdb_breakpoint.py runs as documented, on both test programs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.peers.programs import GdbQemu

EXAMPLE = Path(__file__).parents[3] / "docs" / "examples" / "gdb_breakpoint.py"


@pytest.mark.parametrize("arch", ["x86_64", "cortex-m3"])
async def test_example(gdb_qemu: Callable[[str], GdbQemu], arch: str) -> None:
    target = gdb_qemu(arch)
    nm = "nm" if arch == "x86_64" else "arm-none-eabi-nm"
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, str(EXAMPLE), target.gdb_address, str(target.program.elf), nm],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert f"(tick is at {target.program.symbols['tick']:#x})" in out
    assert "counter = 1" in out
    assert f"watchpoint: watch at {target.program.symbols['watched']:#x}" in out
    assert "event: True" in out
    assert "7.2" in out
