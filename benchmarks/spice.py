"""Spice client figures against QEMU 7.2's spice-server, with the reference client in the same run.

Reported (median of several rounds, one QEMU for everything, Unix socket):

* link time per channel type (connect + RSA key + ticket + link result),
* full connect (main + display + inputs) to the first complete frame,
* key press+release cost (two messages on the inputs channel),
* screenshot (framebuffer to PNG) time,
* connect + first frame + image file: virtrio vs ``spicy-screenshot`` (spice-gtk), as a ratio.

Run: ``.venv/bin/python benchmarks/spice.py``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import Row, Spread, write_results
from virtrio.channels.spice import ChannelType, open_channel, open_spice_session
from virtrio.channels.spice._transport import SpiceTransport

ROUNDS = 7
KEYS = 500


def start_qemu(folder: Path) -> subprocess.Popen[bytes]:
    (folder / "sercon").write_bytes(struct.pack("<H", 0x3F8))
    argv = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "64", "-nodefaults",
        "-display", "none", "-device", "VGA", "-boot", "menu=on,splash-time=60000",
        "-device", "qemu-xhci",
        "-chardev", "spicevmc,name=usbredir,id=usbr", "-device", "usb-redir,chardev=usbr",
        "-audiodev", "spice,id=snd0", "-device", "intel-hda", "-device", "hda-duplex,audiodev=snd0",
        "-chardev", "spiceport,id=sp0,name=org.virtrio.serial0", "-serial", "chardev:sp0",
        "-fw_cfg", f"name=etc/sercon-port,file={folder}/sercon",
        "-spice", f"unix=on,addr={folder}/spice.sock,disable-ticketing=on,image-compression=off",
    ]  # fmt: skip
    env = dict(os.environ, SPICE_DEBUG_ALLOW_MC="1")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    while not (folder / "spice.sock").exists():
        time.sleep(0.02)
    return proc


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:8.2f} ms"


async def bench(address: str, sock: Path) -> None:
    # let SeaBIOS reach its text prompt so every frame is the same size
    async with open_spice_session(address) as spice:
        display = await spice.display()
        await display.wait_ready()
        with trio.fail_after(20):
            while (p := display.state.primary) is None or p.width != 720:
                await display.wait_change(timeout=20)
        channels = spice.channels
        session_id = spice.session_id
        transport = SpiceTransport.parse(address)
        print("link time per channel (one connection each, session kept open):")
        for kind, cid in sorted(set(channels)):
            times = []
            # spice-server 0.15.1 aborts QEMU when a spiceport is relinked repeatedly
            # ("client have already been removed from char dev"): link a port once
            for _ in range(1 if kind == ChannelType.PORT else ROUNDS):
                t0 = time.perf_counter()
                async with open_channel(transport, kind, cid, connection_id=session_id):
                    times.append(time.perf_counter() - t0)
            print(f"  {ChannelType(kind).name.lower():10} {ms(times)}")
        inputs = await spice.inputs()
        t0 = time.perf_counter()
        for _ in range(KEYS):
            await inputs.key_down(0x2A)  # left shift: harmless at the SeaBIOS prompt
            await inputs.key_up(0x2A)
        key_cost = (time.perf_counter() - t0) / KEYS
        shots = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            await display.screenshot()
            shots.append(time.perf_counter() - t0)
    print(f"key press+release (2 messages):  {key_cost * 1e6:8.1f} us")
    print(f"screenshot 720x400 -> PNG:       {ms(shots)}")

    full, ours = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        async with open_spice_session(address, channels={"display", "inputs"}) as spice:
            display = await spice.display()
            await display.wait_ready()
            full.append(time.perf_counter() - t0)
            png = await display.screenshot()
        await trio.Path(sock.parent / "ours.png").write_bytes(png)
        ours.append(time.perf_counter() - t0)
    print(f"full connect to first frame:     {ms(full)}")
    spicy = shutil.which("spicy-screenshot")
    if spicy is None:
        print("spicy-screenshot not installed (apt-get install spice-client-gtk): no reference")
        print(f"virtrio connect+frame+PNG:       {ms(ours)}")
        return
    ref = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        await trio.run_process(
            [spicy, f"--uri=spice+unix://{sock}", "-o", str(sock.parent / "ref.ppm")],
            capture_stdout=True,
            capture_stderr=True,
        )
        ref.append(time.perf_counter() - t0)
    ratio = statistics.median(ours) / statistics.median(ref)
    print("connect + first frame + image file:")
    print(f"  virtrio (in process, PNG):     {ms(ours)}")
    print(f"  spicy-screenshot (process, PPM): {ms(ref)}  (includes process start-up)")
    print(f"  ratio virtrio / spice-gtk:     {ratio:8.2f}")
    write_results(
        "spice",
        [
            Row(
                "spice.screenshot",
                statistics.median(ours) * 1000,
                "ms",
                "spicy-screenshot",
                statistics.median(ref) * 1000,
                runs=Spread.of(t * 1000 for t in ours),
                anchor_runs=Spread.of(t * 1000 for t in ref),
                note="spicy-screenshot's figure includes its process start-up",
            )
        ],
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        proc = start_qemu(folder)
        try:
            trio.run(bench, f"unix:{folder}/spice.sock", folder / "spice.sock")
        finally:
            proc.terminate()
            proc.wait(5)


if __name__ == "__main__":
    main()
