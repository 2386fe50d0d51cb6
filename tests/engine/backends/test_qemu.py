"""The QEMU backend end to end: the real qemu-system-arm and -x86_64 running the bare-metal
test programs of tests/peers/programs (upload, breakpoints, registers, memory, step, continue,
UART, snapshots, coverage), through an instance and through the id-based adapter."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.peers import require_program
from tests.peers.programs import BareMetalProgram
from virtrio.engine.backends import (
    BackendStateError,
    Breakpoint,
    BreakpointKind,
    Capability,
    ConsoleBuffer,
    ProgramFormat,
    QemuBackend,
    QemuInstance,
    StartOptions,
    UnsupportedCapabilityError,
    board_template,
    load_backend,
    open_adapter,
)
from virtrio.engine.backends._qemu_run import RunSpec, serve_run
from virtrio.engine.backends._snapshots import migrate_to_file
from virtrio.errors import ConfigError

Build = Callable[[str], BareMetalProgram]
#: The board each test program is built for.
BOARDS = {"cortex-m3": "lm3s6965evb", "x86_64": "pc"}


def _u32(data: bytes) -> int:
    return int(struct.unpack("<I", data)[0])


async def _stop_at_tick(machine: QemuInstance, program: BareMetalProgram) -> int:
    pid = await machine.upload_program(program.elf.read_bytes(), name=program.name)
    await machine.set_breakpoint(Breakpoint(symbol="tick"))
    await machine.start_program(pid)
    return await machine.wait_stop(timeout=30)


@pytest.mark.parametrize("name", ["cortex-m3", "x86_64"])
async def test_breakpoint_registers_memory_step_continue_uart(
    name: str, bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program(name)
    backend = QemuBackend()
    node = board_template(BOARDS[name]).nodes[0]
    async with backend.open_instance(node, instance_id="t", workdir=tmp_path / "i") as machine:
        pc = await _stop_at_tick(machine, program)
        assert pc == program.symbols["tick"]
        counter = program.symbols["counter"]
        pc_name = "pc" if name == "cortex-m3" else "rip"
        registers = await machine.read_registers()
        assert registers[pc_name] == program.symbols["tick"]
        assert await machine.read_registers([pc_name]) == {pc_name: pc}
        # the first tick(1): counter is still 0 until tick's store runs
        assert _u32(await machine.read_memory(counter, 4)) == 0
        assert await machine.read_memory(program.symbols["pattern"], 4) == bytes([1, 8, 15, 22])
        stepped = await machine.step()
        assert stepped != pc
        for expected in (1, 2):  # continue to the next tick: counter holds the previous n
            await machine.continue_()
            assert await machine.wait_stop(timeout=30) == program.symbols["tick"]
            assert _u32(await machine.read_memory(counter, 4)) == expected
        await machine.remove_breakpoint(Breakpoint(symbol="tick"))
        await machine.write_memory(program.symbols["poked"], struct.pack("<I", 42))
        await machine.continue_()
        output = await machine.wait_console(b"poked 42\n", timeout=30)
        assert output.startswith(program.banner)
        await machine.pause()
        with pytest.raises(ConfigError, match="no register"):
            await machine.read_registers(["no-such-register"])


# lm3s6965evb cannot restore snapshots in QEMU 7.2 (see its capabilities); the Cortex-M3
# program runs on mps2-an385 too (its UART writes land nowhere there; memory is what counts)
@pytest.mark.parametrize(
    ("name", "board", "pc_name"),
    [("x86_64", "pc", "rip"), ("cortex-m3", "mps2-an385", "pc")],
)
async def test_snapshot_restores_a_variable(
    name: str, board: str, pc_name: str, bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program(name)
    template = board_template(board, ram_size=64 << 20) if board == "pc" else board_template(board)
    node = template.nodes[0]
    async with QemuBackend().open_instance(node, instance_id="s", workdir=tmp_path) as machine:
        await _stop_at_tick(machine, program)
        counter = program.symbols["counter"]
        for _ in range(3):
            await machine.continue_()
            await machine.wait_stop(timeout=30)
        saved = _u32(await machine.read_memory(counter, 4))
        snapshot = await machine.create_snapshot()
        for _ in range(5):
            await machine.continue_()
            await machine.wait_stop(timeout=30)
        assert _u32(await machine.read_memory(counter, 4)) == saved + 5
        pc_before = (await machine.read_registers([pc_name]))[pc_name]
        await machine.restore_snapshot(snapshot)
        assert _u32(await machine.read_memory(counter, 4)) == saved
        assert (await machine.read_registers([pc_name]))[pc_name] == pc_before
        # and the machine goes on from there
        await machine.continue_()
        await machine.wait_stop(timeout=30)
        assert _u32(await machine.read_memory(counter, 4)) == saved + 1
        with pytest.raises(ConfigError, match="no snapshot 'nope'"):
            await machine.restore_snapshot("nope")


async def test_migration_to_a_file_restores_in_a_new_qemu(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    """The other snapshot method (measured by benchmarks/backends.py): migrate to a file,
    then a new QEMU started from it has the same memory."""
    program = bare_metal_program("x86_64")
    node = board_template("pc", ram_size=64 << 20).nodes[0]
    state = tmp_path / "state.mig"
    counter = program.symbols["counter"]
    async with QemuBackend().open_instance(node, instance_id="m", workdir=tmp_path / "a") as m:
        await _stop_at_tick(m, program)
        mark = b"virtrio-migrated"  # the program never writes pattern again after startup
        await m.write_memory(program.symbols["pattern"], mark)
        await m.remove_breakpoint(Breakpoint(symbol="tick"))
        await m.continue_()  # saved running: QMP pauses it (GDB hears of the stop)
        await migrate_to_file(m.qmp, state)
        await m.gdb.wait_stop(timeout=30)
        saved = await m.read_memory(counter, 4)
        assert m.run_spec is not None
        argv = m.run_spec.argv
    spec = RunSpec(argv, 0, tmp_path / "b", tmp_path / "b.log", incoming=state)
    spec.workdir.mkdir()
    async with trio.open_nursery() as nursery:
        run = await nursery.start(serve_run, spec, ConsoleBuffer(), _ignore)
        assert run.gdb is not None
        assert await run.gdb.read_memory(counter, 4) == saved
        assert await run.gdb.read_memory(program.symbols["pattern"], len(mark)) == mark
        run.stop.set()
    assert run.process.returncode is not None


async def _ignore(gdb: object) -> None:
    return None


async def test_board_without_snapshots_says_so(tmp_path: Path) -> None:
    node = board_template("lm3s6965evb").nodes[0]
    backend = QemuBackend()
    assert not backend.capabilities(node).supports(Capability.SNAPSHOTS)
    assert backend.capabilities(board_template("mps2-an385").nodes[0]).supports(
        Capability.SNAPSHOTS
    )
    async with backend.open_instance(node, instance_id="n", workdir=tmp_path) as machine:
        await machine.power_on()
        with pytest.raises(UnsupportedCapabilityError, match=r"'snapshots'.*sd_ocr_powerup"):
            await machine.create_snapshot()
        with pytest.raises(UnsupportedCapabilityError, match=r"'coverage'.*trace=True"):
            await machine.export_coverage()


async def test_coverage_names_what_ran(bare_metal_program: Build, tmp_path: Path) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    backend = QemuBackend(trace=True)
    async with backend.open_instance(node, instance_id="c", workdir=tmp_path) as machine:
        await _stop_at_tick(machine, program)
        for _ in range(3):
            await machine.continue_()
            await machine.wait_stop(timeout=30)
        artifact = await machine.export_coverage()
        trace = await machine.export_trace()
    assert artifact.media_type == "text/x-lcov"
    records = _parse_lcov(artifact.path.read_text())
    program_c = next(r for f, r in records.items() if f.endswith("common/program.c"))
    startup_c = next(r for f, r in records.items() if f.endswith("cortex-m3/startup.c"))
    assert program_c["FNDA"]["main"] == 1
    assert program_c["FNDA"]["tick"] >= 3
    assert program_c["FNDA"]["uart_puts"] >= 1
    assert startup_c["FNDA"]["reset_handler"] == 1
    assert startup_c["FNDA"]["default_handler"] == 0  # no fault, no interrupt: never ran
    # uart_put_decimal (inlined into main at -O1) runs only when poked: its lines never ran
    decimal_lines = range(20, 27)
    assert all(program_c["DA"][line] == 0 for line in decimal_lines if line in program_c["DA"])
    assert any(line in program_c["DA"] for line in decimal_lines)
    assert program_c["DA"][30] >= 3  # tick's body
    assert b"Trace 0:" in trace.path.read_bytes()


def _parse_lcov(text: str) -> dict[str, dict[str, dict[Any, int]]]:
    """{source file: {"FNDA": {function: count}, "DA": {line: count}}} of an lcov file."""
    records: dict[str, dict[str, dict[Any, int]]] = {}
    current: dict[str, dict[Any, int]] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "SF":
            current = records.setdefault(value, {"FNDA": {}, "DA": {}})
        elif key == "FNDA":
            count, name = value.split(",", 1)
            current["FNDA"][name] = int(count)
        elif key == "DA":
            number, count = value.split(",")[:2]
            current["DA"][int(number)] = int(count)
    assert text.rstrip().endswith("end_of_record")
    return records


async def test_raw_image_and_entry_point(bare_metal_program: Build, tmp_path: Path) -> None:
    program = bare_metal_program("cortex-m3")
    objcopy = require_program("arm-none-eabi-objcopy", "binutils-arm-none-eabi")
    raw = tmp_path / "program.bin"
    await trio.run_process([objcopy, "-O", "binary", str(program.elf), str(raw)])
    node = board_template("lm3s6965evb").nodes[0]
    async with QemuBackend().open_instance(node, instance_id="r", workdir=tmp_path / "i") as m:
        with pytest.raises(ConfigError, match="load_address"):
            await m.upload_program(raw.read_bytes(), format=ProgramFormat.RAW)
        with pytest.raises(ConfigError, match="not an ELF"):
            await m.upload_program(raw.read_bytes())
        pid = await m.upload_program(raw.read_bytes(), format=ProgramFormat.RAW, load_address=0)
        await m.start_program(pid)
        await m.wait_console(program.banner, timeout=30)
        with pytest.raises(ConfigError, match="no symbols"):
            await m.set_breakpoint(Breakpoint(symbol="tick"))
        # an ELF started at an entry point: the CPU is held there
        elf = await m.upload_program(program.elf.read_bytes())
        await m.start_program(elf, StartOptions(entry=program.symbols["main"], halted=True))
        assert (await m.read_registers(["pc"]))["pc"] == program.symbols["main"]


async def test_watchpoint_stops_on_write(bare_metal_program: Build, tmp_path: Path) -> None:
    program = bare_metal_program("x86_64")
    node = board_template("pc", ram_size=64 << 20).nodes[0]
    async with QemuBackend().open_instance(node, instance_id="w", workdir=tmp_path) as machine:
        await _stop_at_tick(machine, program)
        await machine.remove_breakpoint(Breakpoint(symbol="tick"))
        watch = Breakpoint(symbol="watched", kind=BreakpointKind.WRITE, length=4)
        assert await machine.set_breakpoint(watch) == program.symbols["watched"]
        await machine.continue_()
        await machine.wait_stop(timeout=30)
        assert machine.gdb.last_stop is not None
        assert getattr(machine.gdb.last_stop, "reason", None) == "watch"


async def test_power_cycle_reset_and_cancellation_reap(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    processes = []
    with trio.move_on_after(60) as scope:
        async with QemuBackend().open_instance(node, instance_id="p", workdir=tmp_path) as m:
            pid = await m.upload_program(program.elf.read_bytes())
            await m.start_program(pid)
            await m.wait_console(program.banner, timeout=30)
            processes.append(m.qmp)
            await m.reset()
            await m.wait_console(program.banner * 2, timeout=30)  # it ran again from reset
            await m.power_off()
            assert not m.is_powered
            with pytest.raises(BackendStateError, match="powered off"):
                await m.read_registers()
            await m.power_on()  # held at reset with the same program
            assert m.is_powered
            run = m._run
            assert run is not None
            scope.cancel()  # cancelled with QEMU running: it is stopped and reaped all the same
            await trio.sleep_forever()
    assert run.process.returncode is not None


async def test_adapter_by_instance_id(bare_metal_program: Build, tmp_path: Path) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    backend = load_backend("qemu")
    async with open_adapter(backend, tmp_path) as adapter:
        assert adapter.backend_type() == "qemu"
        iid = await adapter.create_instance(node, session_id="s1")
        machine = adapter.instance(iid)
        assert adapter.capabilities(iid) == machine.capabilities()
        pid = await machine.upload_program(program.elf.read_bytes())
        await machine.start_program(pid)
        await machine.wait_console(program.banner, timeout=30)
        await adapter.destroy_instance(iid)
        with pytest.raises(ConfigError, match=f"no instance {iid!r}"):
            adapter.instance(iid)
        assert adapter.instance_ids == []
        await adapter.create_instance(node)  # left running: the adapter's exit stops it
