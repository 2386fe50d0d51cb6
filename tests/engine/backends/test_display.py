"""Screenshots of a QEMU board's display (QMP screendump as PNG): lm3s6965evb has its OLED; a
board without a display says so through the capability, before anything is sent."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.programs import BareMetalProgram
from virtrio.engine.backends import (
    Capability,
    QemuBackend,
    UnsupportedCapabilityError,
    board_template,
)

Build = Callable[[str], BareMetalProgram]
PNG = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height in a PNG's IHDR chunk (the first, right after the signature)."""
    assert data.startswith(PNG)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_a_screenshot_of_the_lm3s6965evb_oled(
    bare_metal_program: Build, tmp_path: Path
) -> None:
    program = bare_metal_program("cortex-m3")
    node = board_template("lm3s6965evb").nodes[0]
    backend = QemuBackend()
    assert backend.capabilities(node).supports(Capability.DISPLAY)
    async with backend.open_instance(node, instance_id="d", workdir=tmp_path / "i") as machine:
        await machine.start_program(await machine.upload_program(program.elf.read_bytes()))
        await machine.wait_console(b"hello\n", timeout=30)
        shot = await machine.screenshot()
        width, height = png_size(shot)
        assert height > 0
        assert width == 2 * height  # the 128x64 OLED, magnified
        assert not list((tmp_path / "i").glob("screen-*.png"))  # the temporary file is gone


async def test_a_board_without_a_display_refuses_a_screenshot(tmp_path: Path) -> None:
    node = board_template("mps2-an385").nodes[0]
    backend = QemuBackend()
    caps = backend.capabilities(node)
    assert not caps.supports(Capability.DISPLAY)
    async with backend.open_instance(node, instance_id="n", workdir=tmp_path / "i") as machine:
        with pytest.raises(UnsupportedCapabilityError, match="has no display"):
            await machine.screenshot()
