"""The spice-gtk side of ``benchmarks/spice_fps.py``; runs under Debian's ``/usr/bin/python3``
(SpiceClientGLib through GObject introspection, headless).

``_spice_gtk_fps.py URI SECONDS``: connects the display channel, waits for the 1024x768 primary,
counts the area of every ``display-invalidate`` for SECONDS and prints one JSON line (area in
screens, wall and own CPU seconds); then reads a PPM path from stdin (the server's final frame,
the guest stopped), keeps the main loop running until its primary equals it (5 s at most) and
prints a second JSON line ``{"equal": bool}``.
"""

import ctypes
import json
import resource
import sys
import time

import gi

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject, SpiceClientGLib  # noqa: E402

WIDTH, HEIGHT = 1024, 768


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    uri, seconds = sys.argv[1], float(sys.argv[2])
    state = {"area": 0, "primary": None, "counting": False}
    ctx = GLib.MainContext.default()

    def on_primary(_ch, _fmt, width, height, stride, _shmid, imgdata):
        state["primary"] = (width, height, stride, imgdata)

    def on_invalidate(_ch, _x, _y, w, h):
        if state["counting"]:
            state["area"] += w * h

    def on_channel(_session, channel):
        if isinstance(channel, SpiceClientGLib.DisplayChannel):
            GObject.Object.connect(channel, "display-primary-create", on_primary)
            GObject.Object.connect(channel, "display-invalidate", on_invalidate)
            channel.connect()

    session = SpiceClientGLib.Session()
    session.set_property("uri", uri)
    GObject.Object.connect(session, "channel-new", on_channel)
    session.connect()
    deadline = time.monotonic() + 30
    while (p := state["primary"]) is None or p[:2] != (WIDTH, HEIGHT):
        if time.monotonic() > deadline:
            raise SystemExit("no 1024x768 primary surface within 30 s")
        ctx.iteration(True)
    state["counting"] = True
    t0, c0 = time.perf_counter(), cpu()
    end = t0 + seconds
    while time.perf_counter() < end:
        ctx.iteration(True)
    wall, used = time.perf_counter() - t0, cpu() - c0
    state["counting"] = False
    print(json.dumps({"screens": state["area"] / (WIDTH * HEIGHT), "wall": wall, "cpu": used}))
    sys.stdout.flush()
    path = sys.stdin.readline().strip()
    with open(path, "rb") as f:
        expected = f.read()[-WIDTH * HEIGHT * 3 :]
    equal = False
    deadline = time.monotonic() + 5
    GLib.timeout_add(50, lambda: True)  # wake the loop to look again even when nothing arrives
    while time.monotonic() < deadline:
        _width, height, stride, imgdata = state["primary"]
        bgrx = ctypes.string_at(imgdata, stride * height)
        rgb = bytearray(WIDTH * HEIGHT * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = bgrx[2::4], bgrx[1::4], bgrx[0::4]
        if rgb == expected:
            equal = True
            break
        ctx.iteration(True)
    print(json.dumps({"equal": equal}))
    session.disconnect()


if __name__ == "__main__":
    main()
