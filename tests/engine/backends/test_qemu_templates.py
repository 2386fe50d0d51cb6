"""The board templates against the real QEMU 7.2 binaries: each machine and CPU is one the
binary lists, and QEMU started with the generated options has each region of the template
at its address (``info mtree``)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import trio

from tests.peers import require_program
from virtrio.channels.qmp import open_qmp
from virtrio.engine.backends import board_template, plan_qemu_node, template_names
from virtrio.engine.backends._qemu_board import QEMU_MACHINES

PACKAGES = {
    "qemu-system-arm": "qemu-system-arm",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-x86_64": "qemu-system-x86",
}


def _listing(binary: str, what: str) -> str:
    return subprocess.run([binary, what, "help"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("name", template_names())
def test_machine_and_cpu_are_offered(name: str) -> None:
    model = QEMU_MACHINES[name]
    binary = require_program(model.binary, PACKAGES[model.binary])
    machines = {line.split()[0] for line in _listing(binary, "-machine").splitlines()[1:] if line}
    assert name in machines
    cpus = _listing(binary, "-cpu")
    for cpu in model.cpus or (board_template(name).nodes[0].processor.type,):
        assert f" {cpu}" in cpus or f"'{cpu}'" in cpus or f"\n{cpu}" in cpus, cpu


@pytest.mark.parametrize("name", template_names())
async def test_regions_are_where_the_template_says(name: str, tmp_path: Path) -> None:
    node = board_template(name).nodes[0]
    plan = plan_qemu_node(node)
    binary = require_program(plan.binary, PACKAGES[plan.binary])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "qmp.sock"))
    listener.listen(1)
    argv = [binary, *plan.args, "-nodefaults", "-display", "none", "-S", "-accel", "tcg"]
    argv += ["-chardev", f"socket,id=qmp0,fd={listener.fileno()},server=on,wait=off"]
    argv += ["-mon", "chardev=qmp0,mode=control"]
    async with trio.open_nursery() as nursery:
        process = await nursery.start(_run, argv, listener)
        try:
            async with open_qmp(f"unix:{tmp_path / 'qmp.sock'}") as qmp:
                tree = await qmp.execute("human-monitor-command", {"command-line": "info mtree -f"})
                await qmp.execute("quit")
        finally:
            process.kill()
    ranges = set()
    for line in tree.splitlines():
        if "(prio" in line and ("ram" in line or "rom" in line):
            span = line.split()[0]
            start, end = (int(x, 16) for x in span.split("-"))
            ranges.add((start, end + 1))
    merged: list[tuple[int, int]] = []  # firmware overlays split RAM into adjacent pieces
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for region in node.memory:
        assert any(start <= region.address and region.end <= end for start, end in merged), (
            region,
            merged,
        )


async def _run(
    argv: list[str], listener: socket.socket, *, task_status: trio.TaskStatus[trio.Process]
) -> None:
    try:
        process = await trio.lowlevel.open_process(
            argv, stdout=subprocess.DEVNULL, pass_fds=[listener.fileno()]
        )
    finally:
        listener.close()
    task_status.started(process)
    await process.wait()
