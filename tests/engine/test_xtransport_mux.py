"""A fleet file's ``mux`` channel with ``protocol: xtransport``, through open_engine: a bare
QEMU (for the VM) and the real peer ``virtrio mux serve --echo --transport xtransport`` on tcp;
streams echo, the scenario step ``mux_echo`` runs on it as on yamux, and the channel's state
events follow the peer being killed and restarted on the same address. Then over a demo
guest's virtio-serial port, whose program in the guest echoes every byte (so the peer of our
xtransport packets is our own packets, read back through the VM): one lane at a time."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.faults.muxserver import MuxServer
from tests.peers import echo_through, free_tcp_address
from virtrio.engine import open_engine
from virtrio.engine.config import parse_fleet
from virtrio.engine.scenario import parse_scenario, run_scenario
from virtrio.errors import VirtrioTimeoutError
from virtrio.nurseries import ChannelState

FLEET = textwrap.dedent("""\
    defaults: {backoff_initial: 0.05, backoff_max: 0.2, stop_grace: 2}
    vms:
      - id: a
        qemu: {machine: none}
        channels:
          qmp: {kind: qmp}
          x:
            kind: mux
            protocol: xtransport
            address: ADDRESS
            frame_size: 1024
""")

SCENARIO = """\
name: xtransport echo
timeout: 30
steps:
  - mux_echo: "ping from ${vm} over xtransport"
    channel: x
"""


PORT_FLEET = textwrap.dedent("""\
    defaults: {backoff_initial: 0.05, backoff_max: 0.2, stop_grace: 2}
    vms:
      - id: g
        qemu: {template: demo}
        channels:
          qmp: {kind: qmp}
          console: {kind: serial-console}
          x: {kind: mux, protocol: xtransport, port: org.virtrio.echo0, frame_size: 1024}
""")


async def test_an_xtransport_mux_in_a_fleet(qemu_binary: str, tmp_path: Path) -> None:
    address = free_tcp_address()
    server = MuxServer(address, "xtransport")
    await server.start()
    try:
        fleet = parse_fleet(FLEET.replace("ADDRESS", address))
        async with open_engine(fleet, workdir=tmp_path) as engine:
            await engine.wait_connected(timeout=30)
            vm = engine.vm("a")
            assert vm.channel_kinds()["x"] == "mux"
            mux = vm.mux("x")
            results: dict[int, str] = {}

            async def one(i: int) -> None:
                payload = f"stream {i} ".encode() * 20_000
                stream = await mux.open_stream()
                async with stream:
                    back = await echo_through(stream, payload)
                results[i] = hashlib.sha256(back).hexdigest()
                assert back == payload

            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(one, i)
            assert len(set(results.values())) == 4

            report = await run_scenario(engine, parse_scenario(SCENARIO), connect_timeout=30)
            (record,) = report.vms["a"].records[1:]  # after the connect step
            assert (record.kind, record.status) == ("mux_echo", "passed"), record.error

            seq = engine.mark()
            server.kill()
            await engine.wait_event("disconnected", vm="a", channel="x", after=seq, timeout=10)
            assert vm.channel_states()["x"] is ChannelState.DISCONNECTED
            await server.stop()
            await server.start()
            await engine.wait_event("connected", vm="a", channel="x", after=seq, timeout=10)
            stream = await mux.open_stream()
            async with stream:
                assert await echo_through(stream, b"after the restart") == b"after the restart"
    finally:
        await server.stop()


async def test_xtransport_lanes_take_turns_on_a_guest_port(tmp_path: Path) -> None:
    fleet = parse_fleet(PORT_FLEET)
    async with open_engine(fleet, workdir=tmp_path) as engine:
        vm = engine.vm("g")
        # the guest's echo loop must hold the port before we write: QEMU drops what the host
        # sends to a port no guest program has open
        await vm.channel("console").expect("virtrio-guest: ready", timeout=120)
        mux = vm.mux("x")
        for i in range(3):  # lane after lane on the one connection
            payload = bytes(range(256)) * (20 + i)  # several 1 KiB packets per message
            async with await mux.open_stream(timeout=30) as lane:
                assert await echo_through(lane, payload) == payload
        assert mux.open_streams == 0

        first = await mux.open_stream(timeout=30)
        with pytest.raises(VirtrioTimeoutError, match="one stream at a time"):
            await mux.open_stream(timeout=0.2)
        got: list[bytes] = []

        async def second() -> None:
            async with await mux.open_stream(timeout=30) as lane:
                got.append(await echo_through(lane, b"second"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.testing.wait_all_tasks_blocked()
            assert not got  # waiting for the port
            await first.send(b"first")
            assert await first.receive() == b"first"
            await first.aclose()  # ends the lane, reads the echo of its end
        assert got == [b"second"]
        assert vm.channel_states()["x"] is ChannelState.CONNECTED
