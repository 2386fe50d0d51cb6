"""The default fleet of demo guests under the engine: every channel of a real guest, including
yamux from the host through a virtio-serial port to hashicorp's yamux (Go) inside the guest."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import trio

from tests.peers import echo_through
from virtrio.engine import default_fleet, open_engine

pytestmark = pytest.mark.slow


async def test_a_demo_guest_with_every_channel(qemu_binary: str, tmp_path: Path) -> None:
    async with open_engine(default_fleet(vms=1), workdir=tmp_path) as engine:
        await engine.wait_connected(timeout=240)
        vm = engine.vm("demo1")
        assert set(vm.channel_states()) == {"qmp", "qga", "console", "mux0"}
        assert (await vm.qga.execute("guest-ping")) == {}

        # yamux to the Go peer in the guest: several streams at once, each echoed
        mux = vm.mux("mux0")
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            stream = await mux.open_stream()
            results[i] = await echo_through(stream, f"stream {i} ".encode() * 1000)

        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(one, i)
        assert results == {i: f"stream {i} ".encode() * 1000 for i in range(4)}

        # the console: output between the command and the wait is not lost
        console = vm.line("console")
        mark = console.mark()
        seq = engine.mark()
        await console.send("echo $((6 * 7))-marker\n")
        found = await console.expect(re.compile(rb"(\d+)-marker\r?\n"), after=mark, timeout=30)
        assert found.groups == (b"42",)
        # ... and the engine's stream carried output marks for it: one per read, contiguous
        outputs = [
            e for e in engine.events_since(seq) if e.kind == "output" and e.channel == "console"
        ]
        assert outputs
        assert outputs[0].data["start"] == mark.offset
        assert all(a.data["end"] == b.data["start"] for a, b in itertools.pairwise(outputs))
        assert outputs[-1].data["end"] >= found.end
        assert all(e.vm == "demo1" and e.name == "output" for e in outputs)

        # a QMP event found by sequence number after it happened
        seq = engine.mark()
        await vm.qmp.execute("stop")
        await vm.qmp.execute("cont")
        await engine.wait_event("RESUME", vm="demo1", after=seq, timeout=10)
        await engine.wait_event("STOP", vm="demo1", after=seq, timeout=1)
