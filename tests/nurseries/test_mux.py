"""vm.mux(name) against hashicorp's yamux in Go: streams open through reconnects of the
session, a stream in flight when the session drops fails, a new open waits for the reconnect."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.peers import echo_through, start_peer, stop_peers
from tests.peers.yamux import build_go_peer
from virtrio.errors import ChannelUnavailableError, ConnectionLostError
from virtrio.nurseries import Backoff, ChannelState, open_vm


@pytest.fixture
def peers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop_peers(started)


def fast() -> Backoff:
    return Backoff(initial=0.02, maximum=0.1, jitter=0)


async def test_streams_through_a_restart_of_the_go_peer(
    tmp_path: Path, peers: list[subprocess.Popen[bytes]]
) -> None:
    binary = build_go_peer()
    address = f"unix:{tmp_path / 'mux.sock'}"
    argv = [binary, "-mode", "echo", "-listen", address]
    go = start_peer(argv, peers, listens=True)
    spec = {"kind": "mux", "address": address}
    async with open_vm("t", channels={"m": spec}, backoff=fast, call_timeout=10) as vm:
        mux = vm.mux("m")
        stream = await mux.open_stream()
        assert await echo_through(stream, b"hello yamux") == b"hello yamux"
        assert await mux.ping() > 0

        in_flight = await mux.open_stream()
        await in_flight.send_all(b"x")
        assert await in_flight.receive_some() == b"x"
        go.process.kill()
        go.process.wait()

        async def read_until_broken() -> None:
            with trio.fail_after(5):
                while True:
                    await in_flight.receive_some()

        with pytest.raises((ConnectionLostError, trio.BrokenResourceError)):
            await read_until_broken()
        with pytest.raises(ChannelUnavailableError):
            await mux.open_stream(timeout=0.2)  # nothing to reconnect to yet

        (tmp_path / "mux.sock").unlink()  # a killed Go peer leaves its socket file
        start_peer(argv, peers, listens=True)  # same address
        stream = await mux.open_stream(timeout=10)  # waits for the reconnect
        assert await echo_through(stream, b"after") == b"after"
        assert vm.channel_states() == {"m": ChannelState.CONNECTED}
