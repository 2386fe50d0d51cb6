"""Sessions against a real QEMU Spice server (SeaBIOS on VGA)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.peers import require_program
from tests.peers.spice import SpiceVM, decode_png_rgb
from virtrio.channels.spice import (
    ChannelType,
    DisplayChannel,
    Rect,
    SpicePermissionError,
    open_spice_session,
)


async def wait_for_text_mode(display: DisplayChannel) -> None:
    """SeaBIOS starts in 640x480 and switches to 720x400 text for its prompt."""
    await display.wait_ready()
    with trio.fail_after(20):
        while (p := display.state.primary) is None or p.width != 720:
            await display.wait_change(timeout=20)


async def test_links_main_display_inputs_cursor(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        assert spice.session_id != 0
        kinds = {kind for kind, _ in spice.channels}
        assert {ChannelType.DISPLAY, ChannelType.INPUTS, ChannelType.CURSOR} <= kinds
        assert spice.main.state.name is not None
        assert spice.main.state.name.startswith("QEMU")
        for sup in spice.supervisors.values():
            assert sup.client is not None


async def test_wrong_password_is_a_permission_error(spice_vm_factory) -> None:  # type: ignore[no-untyped-def]
    vm = spice_vm_factory(password="s3cret")
    with pytest.raises(SpicePermissionError, match="password"):
        async with open_spice_session(vm.address, password="wrong"):
            pass
    with pytest.raises(PermissionError):
        async with open_spice_session(vm.address):
            pass
    async with open_spice_session(vm.address, password="s3cret") as spice:
        assert spice.channels


async def test_screenshot_matches_qemu_screendump(spice_vm: SpiceVM, tmp_path: Path) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        display = await spice.display()
        await wait_for_text_mode(display)
        await trio.to_thread.run_sync(spice_vm.qmp, "stop")
        width, height, rgb = await trio.to_thread.run_sync(
            spice_vm.screendump_rgb, tmp_path / "dump.png"
        )
        bgrx = bytearray(width * height * 4)
        bgrx[0::4], bgrx[1::4], bgrx[2::4] = rgb[2::3], rgb[1::3], rgb[0::3]
        # the Spice stream lags the guest by one refresh: wait (bounded) until it caught up
        await display.wait_region(Rect(0, 0, width, height), bytes(bgrx), timeout=10)
        png = await spice.screenshot()
        assert decode_png_rgb(png) == (width, height, rgb)


async def test_escape_opens_the_seabios_boot_menu(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        display = await spice.display()
        await wait_for_text_mode(display)
        before = await spice.screenshot()
        await spice.send_keys("esc")
        await spice.wait_screen_change(timeout=10)
        with trio.move_on_after(1.0):  # let the menu finish drawing
            while True:
                await spice.wait_screen_change(timeout=1.0)
        assert await spice.screenshot() != before


def read_ppm(data: bytes) -> tuple[int, int, bytes]:
    """Decode a binary P6 PPM (what spicy-screenshot writes) to (width, height, RGB)."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P6"
    width, height = int(fields[1]), int(fields[2])
    return width, height, data[pos + 1 : pos + 1 + width * height * 3]


async def test_screenshot_matches_the_reference_client(spice_vm: SpiceVM, tmp_path: Path) -> None:
    spicy = require_program("spicy-screenshot", "spice-client-gtk")
    async with open_spice_session(spice_vm.address) as spice:
        display = await spice.display()
        await wait_for_text_mode(display)
        await trio.to_thread.run_sync(spice_vm.qmp, "stop")
        out = tmp_path / "ref.ppm"
        # the reference client links while ours stays connected (SPICE_DEBUG_ALLOW_MC=1)
        await trio.run_process(
            [spicy, f"--uri=spice+unix://{spice_vm.spice_path}", "-o", str(out)],
            capture_stdout=True,
            capture_stderr=True,
        )
        width, height, rgb = read_ppm(out.read_bytes())
        bgrx = bytearray(width * height * 4)
        bgrx[0::4], bgrx[1::4], bgrx[2::4] = rgb[2::3], rgb[1::3], rgb[0::3]
        await display.wait_region(Rect(0, 0, width, height), bytes(bgrx), timeout=10)
        assert decode_png_rgb(await spice.screenshot()) == (width, height, rgb)


async def test_mouse_motion_honours_the_ack_window(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        inputs = await spice.inputs()
        with trio.fail_after(10):
            for _ in range(40):  # 5x the window: only completes if the server's acks arrive
                await inputs.mouse_move(1, 1)
            await inputs.click("left")
        assert inputs._unacked <= 8  # never more than two bunches in flight
        assert inputs.buttons == 0
