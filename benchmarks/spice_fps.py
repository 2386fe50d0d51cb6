"""Spice display throughput at 1024x768: full-screen updates per second a client takes in from
a guest that redraws continuously, virtrio beside spice-gtk (SpiceClientGLib) in the same run.

The guest (``_qxl_guest.c``, compiled here with gcc into a multiboot kernel) drives a QXL in
native mode: each frame it fills a 1024x768x32 bitmap in the device's RAM with a new solid
colour and pushes a DRAW_COPY of it onto the command ring, which spice-server's worker takes
as it comes (image compression off, so each reaches a client as one raw bitmap; the server
skips a frame that a newer one covers before it went out). ``SPICE_FPS_GUEST=vga`` runs the
former guest instead (``_fps_guest.S``, a boot sector painting the std VGA framebuffer), whose
changes QEMU hands to spice-server only on its 30 ms display refresh (docs/spice.md); its
figures are printed, not written to the results.

A client's figure is the area of the updates it applied, in screens, per second; "dropped" is
whether, once the guest stopped drawing, the client's framebuffer fails to reach the server's
final frame (QMP ``screendump``). The two clients run one at a time, interleaved, ROUNDS rounds
each; CPU per frame is user+system of the client and of QEMU over each stretch, and the guest's
own rate (frames it pushed per second) is printed beside them.

Run: ``.venv/bin/python benchmarks/spice_fps.py`` (needs gcc with 32-bit support,
``gir1.2-spiceclientglib-2.0`` and Debian's ``/usr/bin/python3`` with ``python3-gi`` for the
spice-gtk side).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import Cpu, Meter, Row, Spread, Usage, write_results
from virtrio.channels.qmp import QmpClient, open_qmp
from virtrio.channels.spice import open_spice_session
from virtrio.channels.spice._framing import Message
from virtrio.errors import VirtrioTimeoutError

WIDTH, HEIGHT = 1024, 768
ROUNDS = int(os.environ.get("SPICE_FPS_ROUNDS", "5"))
SECONDS = float(os.environ.get("SPICE_FPS_SECONDS", "5"))
GUEST = os.environ.get("SPICE_FPS_GUEST", "qxl")
HERE = Path(__file__).resolve().parent
#: the QXL guest's line on its debug console when it has paused: frames pushed so far
PAUSED = re.compile(rb"paused 0x([0-9a-f]{8})")


def build_guest(folder: Path) -> list[str]:
    """Build the guest; return QEMU's display device and boot arguments for it."""
    if GUEST == "vga":
        disk = f"file={build_vga(folder)},format=raw,if=ide"
        return ["-device", "VGA,vgamem_mb=16", "-drive", disk]
    console = f"socket,id=console,path={folder}/console.sock,server=on,wait=off"
    return [
        "-device", "qxl-vga", "-kernel", str(build_qxl(folder)),
        "-chardev", console, "-device", "isa-debugcon,chardev=console",
    ]  # fmt: skip


def build_vga(folder: Path) -> Path:
    """Assemble the redrawing boot sector (std VGA) into a raw disk image."""
    obj, binary, image = folder / "guest.o", folder / "guest.bin", folder / "guest.img"
    subprocess.run(["as", "--32", "-o", obj, HERE / "_fps_guest.S"], check=True)
    ld = ["ld", "-m", "elf_i386", "-Ttext", "0x7c00", "--oformat", "binary", "-o", binary, obj]
    subprocess.run(ld, check=True)
    code = binary.read_bytes()
    assert len(code) <= 510, "the boot sector outgrew 510 bytes"
    image.write_bytes(code.ljust(510, b"\0") + b"\x55\xaa" + bytes(512 * 63))
    return image


def build_qxl(folder: Path) -> Path:
    """Compile the QXL native-mode guest into a 32-bit multiboot kernel."""
    kernel = folder / "guest.elf"
    cc = [
        "gcc", "-m32", "-O2", "-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie",
        "-fno-stack-protector", "-fno-asynchronous-unwind-tables",
        f"-Wl,-T,{HERE / '_qxl_guest.ld'}", "-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments",
        "-o", str(kernel), str(HERE / "_qxl_guest.c"),
    ]  # fmt: skip
    subprocess.run(cc, check=True)
    return kernel


def start_qemu(folder: Path, guest: list[str]) -> subprocess.Popen[bytes]:
    argv = [
        "qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", "32", "-nodefaults",
        "-display", "none", *guest,
        "-qmp", f"unix:{folder}/qmp.sock,server=on,wait=off",
        "-spice", f"unix=on,addr={folder}/spice.sock,disable-ticketing=on,"
                  "image-compression=off,streaming-video=off",
    ]  # fmt: skip
    env = dict(os.environ, SPICE_DEBUG_ALLOW_MC="1")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 10
    sockets = ["spice.sock", "qmp.sock"] + ([] if GUEST == "vga" else ["console.sock"])
    while not all((folder / name).exists() for name in sockets):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("QEMU did not open its sockets")
        time.sleep(0.02)
    return proc


def ppm_rgb(path: Path) -> bytes:
    """The RGB pixels of a 1024x768 binary PPM."""
    return path.read_bytes()[-WIDTH * HEIGHT * 3 :]


def bgrx_to_rgb(bgrx: bytes | bytearray) -> bytes:
    rgb = bytearray(WIDTH * HEIGHT * 3)
    rgb[0::3], rgb[1::3], rgb[2::3] = bgrx[2::4], bgrx[1::4], bgrx[0::4]
    return bytes(rgb)


class Bench:
    def __init__(self, folder: Path, qemu: subprocess.Popen[bytes]) -> None:
        self.folder = folder
        self.qemu = qemu
        self.address = f"unix:{folder}/spice.sock"
        self.meter = Meter(peers={"qemu": qemu.pid})
        self.qmp: QmpClient
        #: frame counts of the QXL guest's "paused" lines, as they come
        self.paused: trio.MemoryReceiveChannel[int]
        #: frames the QXL guest had pushed when it last paused, and since when it is drawing
        self.guest_frames = 0
        self.guest_since = time.monotonic()
        self.guest_rates: list[float] = []

    async def final_frame(self, name: str) -> bytes:
        """Stop the guest's drawing and return the server's frame (RGB)."""
        path = self.folder / f"{name}.ppm"
        if GUEST == "vga":
            await self.qmp.execute("stop")
        else:
            # the guest pauses on a key (see _qxl_guest.c) and says so on its debug console;
            # the VM keeps running, so the screendump asks spice-server to draw what it holds
            await self.qmp.execute("send-key", {"keys": [{"type": "qcode", "data": "p"}]})
            with trio.fail_after(10):
                frames = await self.paused.receive()
            elapsed = time.monotonic() - self.guest_since
            self.guest_rates.append((frames - self.guest_frames) / elapsed)
            self.guest_frames = frames
        await self.qmp.execute("screendump", {"filename": str(path)})
        return ppm_rgb(path)

    async def resume(self) -> None:
        """Let the guest draw again."""
        if GUEST == "vga":
            await self.qmp.execute("cont")
        else:
            await self.qmp.execute("send-key", {"keys": [{"type": "qcode", "data": "r"}]})
            self.guest_since = time.monotonic()

    async def virtrio_round(self) -> tuple[float, Usage, bool]:
        async with open_spice_session(self.address, channels={"display"}) as spice:
            display = await spice.display()
            with trio.fail_after(30):
                while (p := display.state.primary) is None or (p.width, p.height) != (
                    WIDTH,
                    HEIGHT,
                ):
                    await display.wait_change(timeout=30)
            area = 0
            state, channel = display.state, display.channel
            original = channel.handler

            def counting(msg: Message) -> None:
                nonlocal area
                before = state.generation
                rect = state.handle(msg.type, msg.body, placed=msg.placed)
                if rect is not None:
                    area += max(0, min(rect.right, WIDTH) - max(rect.left, 0)) * max(
                        0, min(rect.bottom, HEIGHT) - max(rect.top, 0)
                    )
                if state.generation != before:
                    display._changed.set()
                    display._changed = trio.Event()

            channel.handler = counting
            with self.meter:
                await trio.sleep(SECONDS)
            usage = self.meter.usage(1)
            channel.handler = original
            expected = await self.final_frame("virtrio")
            equal = False
            with trio.move_on_after(5):
                while not equal:
                    primary = display.state.primary
                    assert primary is not None
                    equal = bgrx_to_rgb(primary.pixels) == expected
                    if not equal:
                        try:
                            await display.wait_change(timeout=5)
                        except VirtrioTimeoutError:
                            break
        await self.resume()
        return area / (WIDTH * HEIGHT), usage, equal

    async def gtk_round(self) -> tuple[float, Usage, bool]:
        uri = f"spice+unix://{self.folder}/spice.sock"
        argv = ["/usr/bin/python3", str(HERE / "_spice_gtk_fps.py"), uri, str(SECONDS)]
        proc = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None
        assert proc.stdout is not None
        buffered = b""

        async def line() -> dict[str, float]:
            nonlocal buffered
            while b"\n" not in buffered:
                chunk = await proc.stdout.receive_some()  # type: ignore[union-attr]
                if not chunk:
                    raise RuntimeError("the spice-gtk client ended early")
                buffered += chunk
            first, buffered = buffered.split(b"\n", 1)
            return json.loads(first)  # type: ignore[no-any-return]

        try:
            with trio.fail_after(60):
                with self.meter:
                    report = await line()
                # QEMU's CPU over the client's counted stretch, scaled from the whole wait
                # (connect and first frame included)
                waited = self.meter.usage(1)
                qemu_share = waited.cpu["qemu"].total * report["wall"] / waited.wall
                expected_path = self.folder / "gtk.ppm"
                await self.final_frame("gtk")
                await proc.stdin.send_all(f"{expected_path}\n".encode())
                equal = bool((await line())["equal"])
        except BaseException:
            proc.kill()  # it may be waiting for the path on its stdin
            raise
        finally:
            await proc.wait()
        await self.resume()
        usage = Usage(
            report["wall"],
            {"spice-gtk": Cpu(report["cpu"], 0.0), "qemu": Cpu(qemu_share, 0.0)},
            1,
        )
        return report["screens"], usage, equal

    async def run(self) -> None:
        async with open_qmp(f"unix:{self.folder}/qmp.sock") as self.qmp:
            if GUEST == "vga":
                await self.rounds()
                return
            console = await trio.open_unix_socket(str(self.folder / "console.sock"))
            send, self.paused = trio.open_memory_channel[int](16)
            async with console, trio.open_nursery() as nursery:
                nursery.start_soon(read_console, console, send)
                await self.rounds()
                nursery.cancel_scope.cancel()

    async def rounds(self) -> None:
        ours: list[tuple[float, Usage, bool]] = []
        theirs: list[tuple[float, Usage, bool]] = []
        for i in range(ROUNDS):
            ours.append(await self.virtrio_round())
            theirs.append(await self.gtk_round())
            guest = "".join(f", guest {r:.0f}" for r in self.guest_rates[-2:])
            print(
                f"round {i + 1}: virtrio {ours[-1][0] / ours[-1][1].wall:6.1f} FPS "
                f"(state equal: {ours[-1][2]}), "
                f"spice-gtk {theirs[-1][0] / theirs[-1][1].wall:6.1f} FPS "
                f"(state equal: {theirs[-1][2]}){guest}"
            )
        report(ours, theirs, self.guest_rates)


async def read_console(console: trio.SocketStream, paused: trio.MemorySendChannel[int]) -> None:
    """Send the frame count of each "paused" line of the guest's debug console."""
    buffered = b""
    while chunk := await console.receive_some():
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            if match := PAUSED.fullmatch(line):
                await paused.send(int(match[1], 16))


def per_frame(rounds: list[tuple[float, Usage, bool]]) -> dict[str, float]:
    frames = sum(r[0] for r in rounds)
    sides: dict[str, float] = {}
    for _, usage, _ in rounds:
        for side, cpu in usage.cpu.items():
            sides[side] = sides.get(side, 0.0) + cpu.total
    return {side: total / frames * 1e6 for side, total in sides.items()}


def report(
    ours: list[tuple[float, Usage, bool]],
    theirs: list[tuple[float, Usage, bool]],
    guest_rates: list[float],
) -> None:
    fps = Spread.of(r[0] / r[1].wall for r in ours)
    ref = Spread.of(r[0] / r[1].wall for r in theirs)
    cpu_ours = per_frame(ours)
    cpu_ours = {"virtrio": cpu_ours["virtrio"], "qemu": cpu_ours["qemu"]}
    cpu_ref = per_frame(theirs)
    dropped = sum(not r[2] for r in ours)
    dropped_ref = sum(not r[2] for r in theirs)
    print(f"virtrio:   {fps.describe('.1f')} FPS, CPU us/frame {cpu_ours}")
    print(f"spice-gtk: {ref.describe('.1f')} FPS, CPU us/frame {cpu_ref}")
    print(f"final state not reached: virtrio {dropped}/{len(ours)}, spice-gtk {dropped_ref}")
    note = (
        f"{GUEST} guest; full-screen-equivalent updates per second (applied area / 1024x768); "
        "one client at a time, interleaved"
    )
    if guest_rates:
        rates = Spread.of(guest_rates)
        print(f"guest pushed {rates.describe('.0f')} frames/s")
        note += f"; the guest pushed {rates.median:.0f} frames/s (median)"
    if GUEST == "vga":
        print("(the VGA guest's figures are not written: the table's row is the QXL guest's)")
        return
    write_results(
        "spice_fps",
        [
            Row(
                "spice.fps",
                fps.median,
                "FPS",
                "spice-gtk",
                ref.median,
                cpu_us={"virtrio": cpu_ours, "spice-gtk": cpu_ref},
                runs=fps,
                anchor_runs=ref,
                note=note,
            ),
            Row(
                "spice.dropped",
                float(dropped),
                "runs",
                "spice-gtk",
                float(dropped_ref),
                note=f"rounds whose final framebuffer missed the server's last frame, of {ROUNDS}",
            ),
        ],
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        guest = build_guest(folder)
        qemu = start_qemu(folder, guest)
        try:
            trio.run(Bench(folder, qemu).run)
        finally:
            qemu.terminate()
            qemu.wait(5)


if __name__ == "__main__":
    main()
