"""The GDB client against QEMU's real gdbstub, on x86_64 (qemu-system-x86_64, a PVH ELF) and a
Cortex-M3 board (qemu-system-arm -M lm3s6965evb), each running tests/peers/programs."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.peers.programs import GdbQemu
from virtrio.channels.gdb import (
    GdbClient,
    GdbCommandError,
    GdbLocalProtocolError,
    GdbUnsupportedError,
    Stopped,
    ThreadId,
    open_gdb,
)
from virtrio.errors import CommandError, ConnectError, ConnectionLostError

ARCHES = ["x86_64", "cortex-m3"]
#: Per architecture: the program counter, the first argument's register, the architecture name.
PC = {"x86_64": "rip", "cortex-m3": "pc"}
ARG0 = {"x86_64": "rdi", "cortex-m3": "r0"}
ARCHITECTURE = {"x86_64": "i386:x86-64", "cortex-m3": "arm"}

StartQemu = Callable[[str], GdbQemu]


def _u32(data: bytes) -> int:
    return int.from_bytes(data, "little")


async def _read_until(stream: trio.abc.ReceiveStream, marker: bytes, seen: bytearray) -> None:
    """Read the UART into ``seen`` until it holds ``marker`` (the test's deadline bounds it)."""
    while marker not in seen:
        chunk = await stream.receive_some(4096)
        assert chunk, f"the UART closed; it said {bytes(seen)!r}"
        seen += chunk


async def _run_to_tick(gdb: GdbClient, target: GdbQemu) -> Stopped:
    await gdb.set_breakpoint(target.program.symbols["tick"])
    await gdb.continue_()
    stop = await gdb.wait_stop(timeout=30)
    assert isinstance(stop, Stopped)
    return stop


@pytest.mark.parametrize("arch", ARCHES)
async def test_handshake_target_description_and_threads(gdb_qemu: StartQemu, arch: str) -> None:
    target = gdb_qemu(arch)
    async with open_gdb(target.gdb_address) as gdb:
        assert gdb.is_connected
        assert gdb.target.architecture == ARCHITECTURE[arch]
        names = [r.name for r in gdb.target.registers]
        assert PC[arch] in names
        assert ARG0[arch] in names
        assert gdb.features.packet_size >= 1024
        assert {"c", "s"} <= gdb.vcont_actions
        # QEMU -S halts at reset: the stub says SIGTRAP, for CPU 1 of process 1
        assert isinstance(gdb.last_stop, Stopped)
        assert gdb.last_stop.signal == 5
        threads = await gdb.threads()
        assert len(threads) == 1
        assert gdb.last_stop.thread == threads[0]
        await gdb.select_thread(threads[0])
        registers = await gdb.read_registers()
        assert set(registers) == set(names)  # every described register is available
        if arch == "x86_64":
            assert registers["rip"] == 0xFFF0
            assert registers["cs"] == 0xF000
        else:  # the vector table's reset handler, Thumb bit cleared
            vectors = await gdb.read_memory(0, 8)
            assert registers["pc"] == _u32(vectors[4:]) & ~1
            assert registers["sp"] == _u32(vectors[:4])
    assert not gdb.is_connected


@pytest.mark.parametrize("arch", ARCHES)
async def test_breakpoint_registers_memory_and_step(gdb_qemu: StartQemu, arch: str) -> None:
    target = gdb_qemu(arch)
    symbols = target.program.symbols
    async with open_gdb(target.gdb_address) as gdb:
        stop = await _run_to_tick(gdb, target)
        assert stop.signal == 5
        registers = await gdb.read_registers()
        assert registers[PC[arch]] == symbols["tick"]
        assert registers[ARG0[arch]] == 1  # tick(1)
        assert await gdb.read_register(PC[arch]) == symbols["tick"]
        assert _u32(await gdb.read_memory(symbols["counter"], 4)) == 0  # not yet set
        # continue steps off the breakpoint and hits it again, one call later
        await gdb.continue_()
        await gdb.wait_stop(timeout=30)
        assert await gdb.read_register(ARG0[arch]) == 2
        assert _u32(await gdb.read_memory(symbols["counter"], 4)) == 1
        # a step from the breakpoint moves one instruction
        step = await gdb.step()
        assert isinstance(step, Stopped)
        assert step.signal == 5
        pc = await gdb.read_register(PC[arch])
        assert symbols["tick"] < pc < symbols["tick"] + 8
        # the 4 KiB pattern, read in PacketSize pieces
        expected = bytes((i * 7 + 1) & 0xFF for i in range(4096))
        assert await gdb.read_memory(symbols["pattern"], 4096) == expected
        await gdb.remove_breakpoint(symbols["tick"])


@pytest.mark.parametrize("arch", ARCHES)
async def test_watchpoint_stops_on_the_write(gdb_qemu: StartQemu, arch: str) -> None:
    target = gdb_qemu(arch)
    watched = target.program.symbols["watched"]
    async with open_gdb(target.gdb_address) as gdb:
        # past the startup code first (on ARM it zeroes .bss, which writes `watched` too)
        await _run_to_tick(gdb, target)
        await gdb.remove_breakpoint(target.program.symbols["tick"])
        # QEMU stops after the write on x86, before it on ARM (where continue steps over it)
        await gdb.set_watchpoint(watched, 4, access="write")
        await gdb.continue_()
        first = await gdb.wait_stop(timeout=30)
        assert isinstance(first, Stopped)
        assert (first.reason, first.address) == ("watch", watched)
        await gdb.continue_()
        second = await gdb.wait_stop(timeout=30)
        assert isinstance(second, Stopped)
        assert second.reason == "watch"
        await gdb.remove_watchpoint(watched, 4, access="write")
        # without it the next stop is the breakpoint, a few calls later
        stop = await _run_to_tick(gdb, target)
        assert stop.reason is None
        assert await gdb.read_register(ARG0[arch]) == 3
        assert _u32(await gdb.read_memory(watched, 4)) == 2


@pytest.mark.parametrize("arch", ARCHES)
async def test_uart_memory_write_and_interrupt(gdb_qemu: StartQemu, arch: str) -> None:
    target = gdb_qemu(arch)
    poked = target.program.symbols["poked"]
    seen = bytearray()
    with trio.fail_after(60):
        uart = await trio.open_unix_socket(target.serial_address.removeprefix("unix:"))
        async with uart, open_gdb(target.gdb_address) as gdb:
            with gdb.events() as events:
                await gdb.continue_()
                assert gdb.is_running
                await _read_until(uart, target.program.banner, seen)
                with pytest.raises(GdbLocalProtocolError, match="running"):
                    await gdb.read_memory(poked, 4)
                stop = await gdb.interrupt()
                assert isinstance(stop, Stopped)
                assert stop.signal == 2
                assert await events.receive() == stop
            await gdb.write_memory(poked, (4242).to_bytes(4, "little"))
            assert _u32(await gdb.read_memory(poked, 4)) == 4242
            await gdb.continue_()
            await _read_until(uart, b"poked 4242\n", seen)
            await gdb.interrupt()
            assert _u32(await gdb.read_memory(poked, 4)) == 0  # the program cleared it
    assert bytes(seen) == target.program.banner + b"poked 4242\n"


@pytest.mark.parametrize("arch", ARCHES)
async def test_write_register(gdb_qemu: StartQemu, arch: str) -> None:
    target = gdb_qemu(arch)
    async with open_gdb(target.gdb_address) as gdb:
        await _run_to_tick(gdb, target)
        await gdb.write_register(ARG0[arch], 0x1234)
        assert await gdb.read_register(ARG0[arch]) == 0x1234
        assert (await gdb.read_registers())[ARG0[arch]] == 0x1234
        await gdb.remove_breakpoint(target.program.symbols["tick"])
        await gdb.step()
        await gdb.step()  # tick stored its argument
        assert _u32(await gdb.read_memory(target.program.symbols["counter"], 4)) == 0x1234


async def test_errors_from_the_stub_and_from_us(gdb_qemu: StartQemu) -> None:
    target = gdb_qemu("x86_64")
    async with open_gdb(target.gdb_address) as gdb:
        with pytest.raises(GdbCommandError) as info:
            await gdb.read_memory(0xFFFF_FFFF_FFFF_0000, 4)  # no such physical memory
        assert isinstance(info.value, CommandError)
        assert (info.value.error_class, info.value.code) == ("E14", 0x14)
        assert info.value.command == "mffffffffffff0000,4"
        with pytest.raises(GdbCommandError, match="E22"):
            await gdb.select_thread(ThreadId(0x99, 1))
        with pytest.raises(GdbUnsupportedError):
            await gdb.read_xfer("auxv", "")  # QEMU system emulation has no auxv
        with pytest.raises(GdbLocalProtocolError, match="no register 'r0'"):
            await gdb.read_register("r0")
        with pytest.raises(ValueError, match="access must be"):
            await gdb.set_watchpoint(0, 4, access="sometimes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="does not fit"):
            await gdb.write_register("eflags", 1 << 32)
        # none of these broke the connection
        assert await gdb.read_register("rip") == 0xFFF0
        assert "7.2" in await gdb.monitor("info version")


async def test_connect_errors(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match=r"gdb\.sock"):
        async with open_gdb(f"unix:{tmp_path / 'gdb.sock'}"):
            pass


async def test_qemu_exit_ends_waits_and_listeners(gdb_qemu: StartQemu) -> None:
    target = gdb_qemu("cortex-m3")
    async with open_gdb(target.gdb_address) as gdb:
        with gdb.events() as events:
            await gdb.continue_()
            target.process.kill()
            with trio.fail_after(30), pytest.raises(ConnectionLostError):
                await gdb.wait_stop(timeout=math.inf)
            with pytest.raises(ConnectionLostError):
                await events.receive()
        assert not gdb.is_connected
        with pytest.raises(ConnectionLostError):
            await gdb.read_registers()


async def test_a_client_after_one_that_left_the_target_running(gdb_qemu: StartQemu) -> None:
    target = gdb_qemu("x86_64")
    async with open_gdb(target.gdb_address) as gdb:
        await gdb.detach()  # QEMU lets the target run on
    # QEMU halts it for the next client, and may say so (T02) before or after its first request
    async with open_gdb(target.gdb_address) as gdb:
        assert isinstance(gdb.last_stop, Stopped)
        assert not gdb.is_running
        await _run_to_tick(gdb, target)
        assert await gdb.read_register("rdi") >= 1
        await gdb.detach()
    async with open_gdb(target.gdb_address) as gdb:
        assert await gdb.read_registers()
