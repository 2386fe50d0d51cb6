"""The Renode and SkyEye adapters against FAKES of those programs (tests/engine/backends/fakes:
their documented interfaces, with a real QEMU playing the machine), and against the real
programs when a configuration names them (VIRTRIO_REAL_RENODE / VIRTRIO_REAL_SKYEYE: a path)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.engine.backends.fakes import RENODE, SKYEYE
from tests.peers import require_program
from tests.peers.programs import BareMetalProgram
from virtrio.engine.backends import (
    BackendCommandError,
    BackendStateError,
    BackendUnavailableError,
    BoardConfigError,
    Breakpoint,
    Capability,
    RenodeBackend,
    SkyEyeBackend,
    UnsupportedCapabilityError,
    load_backend,
    parse_board,
    renode_platform,
    skyeye_config,
)
from virtrio.errors import ConfigError

Build = Callable[[str], BareMetalProgram]

MEMORY = [
    {"type": "Flash", "address": 0, "size": "256K", "name": "flash"},
    {"type": "RAM", "address": "0x20000000", "size": "64K", "name": "sram"},
]
RENODE_NODE: dict[str, Any] = {
    "id": "mcu",
    "backend": "renode",
    "processor": {"type": "cortex-m3"},
    "memory": MEMORY,
    "peripherals": [
        {"type": "uart", "name": "uart0", "address": "0x4000C000", "irq": 5,
         "options": {"model": "UART.PL011"}},
    ],
}  # fmt: skip
SKYEYE_NODE: dict[str, Any] = {
    "id": "mcu",
    "backend": "skyeye",
    "machine": "lm3s6965",
    "processor": {"type": "cortex-m3"},
    "memory": MEMORY,
    "peripherals": [{"type": "uart", "name": "uart0"}],
}


def _node(data: dict[str, Any]) -> Any:
    return parse_board({"system_id": "s", "name": "n", "nodes": [data]}).nodes[0]


def _u32(data: bytes) -> int:
    return int(struct.unpack("<I", data)[0])


async def _debug_session(backend: Any, node: Any, program: BareMetalProgram, workdir: Path) -> None:
    async with backend.open_instance(node, instance_id="m", workdir=workdir) as machine:
        caps = machine.capabilities()
        assert not caps.tested
        assert "untested against the real" in caps.summary
        pid = await machine.upload_program(program.elf.read_bytes())
        await machine.set_breakpoint(Breakpoint(symbol="tick"))
        await machine.start_program(pid)
        assert await machine.wait_stop(timeout=30) == program.symbols["tick"]
        assert (await machine.read_registers(["pc"]))["pc"] == program.symbols["tick"]
        await machine.step()
        await machine.continue_()
        await machine.wait_stop(timeout=30)
        assert _u32(await machine.read_memory(program.symbols["counter"], 4)) == 1
        await machine.remove_breakpoint(Breakpoint(symbol="tick"))
        await machine.continue_()
        await machine.wait_console(program.banner, timeout=30)
        await machine.pause()
        await machine.reset()
        with pytest.raises(UnsupportedCapabilityError, match="'snapshots'"):
            await machine.create_snapshot()
        with pytest.raises(UnsupportedCapabilityError, match="'coverage'"):
            await machine.export_coverage()


async def test_renode_adapter_against_the_fake(bare_metal_program: Build, tmp_path: Path) -> None:
    require_program("qemu-system-arm", "qemu-system-arm")
    backend = load_backend("renode", binary=str(RENODE))
    assert isinstance(backend, RenodeBackend)
    await _debug_session(backend, _node(RENODE_NODE), bare_metal_program("cortex-m3"), tmp_path)
    log = (tmp_path / "renode.log").read_text() if (tmp_path / "renode.log").exists() else ""
    assert "Traceback" not in log


async def test_renode_commands_fail_with_renodes_error(tmp_path: Path) -> None:
    async with RenodeBackend(binary=str(RENODE)).open_instance(
        _node(RENODE_NODE), instance_id="e", workdir=tmp_path
    ) as machine:
        with pytest.raises(BackendCommandError, match="error executing command 'frobnicate'"):
            await machine.remote.execute("frobnicate")
        with pytest.raises(BackendCommandError, match="No keyword with name 'Dance'"):
            await machine.remote.run_keyword("Dance")
        await machine.power_on()  # still usable after refused commands


def test_renode_platform_generation_and_refusals() -> None:
    platform, repl = renode_platform(_node(RENODE_NODE))
    assert platform is None
    assert 'cpuType: "cortex-m3"' in repl
    assert "uart0: UART.PL011 @ sysbus 0x4000c000\n    -> nvic@5" in repl
    assert "sram: Memory.MappedMemory @ sysbus 0x20000000\n    size: 0x10000" in repl
    bad = {**RENODE_NODE, "processor": {"type": "cortex-a53", "cores": 2, "frequency": 1}}
    bad["memory"] = [{**MEMORY[0], "access": "RO"}]
    bad["peripherals"] = [{"type": "uart", "name": "u"}]
    with pytest.raises(BoardConfigError) as info:
        renode_platform(_node(bad))
    paths = {path for path, _ in info.value.errors}
    assert paths == {
        "$.nodes[0].processor.type",
        "$.nodes[0].processor.cores",
        "$.nodes[0].processor.frequency",
        "$.nodes[0].memory[0].access",
        "$.nodes[0].peripherals[0].options.model",
        "$.nodes[0].peripherals[0].address",
    }
    with_file = {**RENODE_NODE, "machine": "platforms/cpus/stm32f4.repl"}
    with pytest.raises(BoardConfigError, match=r"\$\.nodes\[0\]\.memory: the platform file"):
        renode_platform(_node(with_file))
    assert renode_platform(_node({**with_file, "memory": [], "peripherals": []}))[0] == (
        "platforms/cpus/stm32f4.repl"
    )


async def test_skyeye_adapter_against_the_fake(bare_metal_program: Build, tmp_path: Path) -> None:
    require_program("qemu-system-arm", "qemu-system-arm")
    backend = load_backend("skyeye", binary=str(SKYEYE))
    assert isinstance(backend, SkyEyeBackend)
    assert not backend.capabilities().supports(Capability.WATCHPOINTS)
    await _debug_session(backend, _node(SKYEYE_NODE), bare_metal_program("cortex-m3"), tmp_path)
    conf = (tmp_path / "skyeye.conf").read_text()
    assert conf.splitlines()[:3] == ["arch: arm", "cpu: cortex-m3", "mach: lm3s6965"]


async def test_skyeye_needs_a_program_to_power_on(tmp_path: Path) -> None:
    async with SkyEyeBackend(binary=str(SKYEYE)).open_instance(
        _node(SKYEYE_NODE), instance_id="p", workdir=tmp_path
    ) as machine:
        with pytest.raises(BackendStateError, match="starts with a program"):
            await machine.power_on()


def test_skyeye_config_refusals_and_raw_banks(tmp_path: Path) -> None:
    conf = skyeye_config(_node(SKYEYE_NODE), raw=(tmp_path / "p.bin", 0x100))
    assert (
        f"mem_bank: map=M, type=RW, addr=0x0, size=0x40000, file={tmp_path / 'p.bin'}, boot=yes"
        in conf
    )
    bad = {**SKYEYE_NODE, "machine": None, "processor": {"type": "mips32", "cores": 2}}
    bad["peripherals"] = [{"type": "uart", "name": "a"}, {"type": "uart", "name": "b"}]
    with pytest.raises(BoardConfigError) as info:
        skyeye_config(_node(bad))
    assert {p for p, _ in info.value.errors} == {
        "$.nodes[0].processor.type",
        "$.nodes[0].machine",
        "$.nodes[0].processor.cores",
        "$.nodes[0].peripherals[1]",
    }


@pytest.mark.parametrize(
    ("backend", "program", "hint"),
    [("renode", "renode", "renode.io"), ("skyeye", "skyeye", "sources")],
)
async def test_missing_program_names_the_install(
    backend: str, program: str, hint: str, tmp_path: Path
) -> None:
    node = _node(RENODE_NODE if backend == "renode" else SKYEYE_NODE)
    chosen = load_backend(backend, binary=str(tmp_path / "absent" / program))
    with pytest.raises(
        BackendUnavailableError, match=rf"{backend}: .*absent.* not found; .*{hint}"
    ) as info:
        async with chosen.open_instance(node, instance_id="x", workdir=tmp_path / "w"):
            pass
    assert isinstance(info.value, ConfigError)  # as before the family: setup, not retry
    assert info.value.backend == backend


@pytest.mark.parametrize("backend", ["renode", "skyeye"])
async def test_the_real_program_when_configured(
    backend: str, bare_metal_program: Build, tmp_path: Path
) -> None:
    variable = f"VIRTRIO_REAL_{backend.upper()}"
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"no configuration names a real {backend} (set {variable}=/path/to/{backend})")
    node = _node(RENODE_NODE if backend == "renode" else SKYEYE_NODE)
    await _debug_session(
        load_backend(backend, binary=path), node, bare_metal_program("cortex-m3"), tmp_path
    )
