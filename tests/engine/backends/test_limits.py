"""Resource limits on real QEMU: RLIMIT_CPU and the cgroup are applied to the process (read
back from /proc and the cgroup files), and a limit that is hit kills QEMU with an error naming
the limit."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.peers.programs import BareMetalProgram
from virtrio.engine.backends import (
    QemuBackend,
    ResourceLimitExceededError,
    ResourceLimits,
    board_template,
    cgroup_support,
    remove_stale_cgroups,
)

Build = Callable[[str], BareMetalProgram]
needs_cgroup = pytest.mark.skipif(
    cgroup_support()["memory"] is None or cgroup_support()["cpus"] is None,
    reason="no writable memory and cpu cgroup on this machine",
)


def _limits_line(pid: int, name: str) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            return line[len(name) :].split()
    raise AssertionError(f"no {name!r} in /proc/{pid}/limits")


@needs_cgroup
async def test_the_limits_are_applied_to_the_qemu_process(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    limits = ResourceLimits(memory_mb=256, cpus=0.5, cpu_time_s=300)
    async with QemuBackend().open_instance(
        node, instance_id="lim", workdir=tmp_path / "i", limits=limits
    ) as machine:
        pid_ = await machine.upload_program(program.elf.read_bytes())
        await machine.start_program(pid_)
        await machine.wait_console(b"hello\n", timeout=30)
        pid = machine.pid
        assert pid is not None
        assert _limits_line(pid, "Max cpu time")[:2] == ["300", "301"]
        applied = machine.limits
        assert applied is not None
        dirs = applied.cgroup_dirs
        for folder in dirs.values():  # the QEMU process itself is in the cgroups
            assert str(pid) in (folder / "cgroup.procs").read_text().split()
        memory, cpu = dirs["memory"], dirs["cpu"]
        if (memory / "memory.limit_in_bytes").exists():  # cgroup v1
            assert int((memory / "memory.limit_in_bytes").read_text()) == 256 << 20
            assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50_000
            assert int((cpu / "cpu.cfs_period_us").read_text()) == 100_000
        else:
            assert int((memory / "memory.max").read_text()) == 256 << 20
            assert (cpu / "cpu.max").read_text().split() == ["50000", "100000"]
    for folder in dirs.values():  # removed with the instance
        assert not folder.exists()


async def test_a_cpu_time_limit_kills_qemu_and_says_so(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program("cortex-m3")  # its main loop spins: QEMU uses a whole core
    node = board_template("lm3s6965evb").nodes[0]
    limits = ResourceLimits(cpu_time_s=1)
    async with QemuBackend().open_instance(
        node, instance_id="cpu", workdir=tmp_path / "i", limits=limits
    ) as machine:
        pid_ = await machine.upload_program(program.elf.read_bytes())
        await machine.start_program(pid_)
        with trio.fail_after(60):
            error = await machine.wait_limit_exceeded()
        assert isinstance(error, ResourceLimitExceededError)
        assert (error.resource, error.limit) == ("cpu_time", 1)
        assert "CPU time limit of 1 s" in str(error)
        assert not machine.is_powered
        with pytest.raises(ResourceLimitExceededError):  # a call finds it gone, and why
            await machine.read_registers()


@needs_cgroup
async def test_a_memory_limit_kills_qemu_and_says_so(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    limits = ResourceLimits(memory_mb=8)  # below what QEMU itself needs to start (~36 MiB)
    async with QemuBackend().open_instance(
        node, instance_id="mem", workdir=tmp_path / "i", limits=limits
    ) as machine:
        pid_ = await machine.upload_program(program.elf.read_bytes())
        with pytest.raises(ResourceLimitExceededError) as caught:
            await machine.start_program(pid_)
        assert (caught.value.resource, caught.value.limit) == ("memory", 8)
        with trio.fail_after(5):
            assert await machine.wait_limit_exceeded() is caught.value


@needs_cgroup
def test_the_cgroups_of_a_dead_server_are_removed_and_a_live_ones_kept() -> None:
    from virtrio.engine.backends._limits import _cgroups

    groups = _cgroups()
    assert groups is not None
    assert groups.memory is not None
    dead = subprocess.Popen(["true"])
    dead.wait()  # reaped: its pid names no process
    stale = groups.memory / f"virtrio-s-old-{dead.pid}"
    live = groups.memory / f"virtrio-s-new-{os.getpid()}"
    stale.mkdir()
    live.mkdir()
    try:
        assert stale in remove_stale_cgroups()
        assert not stale.exists()
        assert live.exists()
    finally:
        for folder in (stale, live):
            if folder.exists():
                folder.rmdir()
