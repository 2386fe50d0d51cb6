"""``virtrio mux serve|send`` end to end: two real processes over loopback and Unix sockets."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.peers.yamux import Factory

MiB = 1 << 20
TRANSPORTS = ["xtransport", "yamux"]


@asynccontextmanager
async def mux_server(*args: str) -> AsyncIterator[str]:
    """Run ``virtrio mux serve ARGS``; yields the address it printed."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "virtrio", "mux", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                assert chunk, "the server exited before it was listening"
                line += chunk
        match = re.fullmatch(r"serving \w+ (echo|sink) on (\S+)\n", line.decode())
        assert match, line
        yield match[2]
    finally:
        process.terminate()
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def mux_send(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "virtrio", "mux", "send", *args],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


@pytest.fixture(params=["tcp", "unix"])
def listen(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path}/mux.sock"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_echo(listen: str, transport: str) -> None:
    async with mux_server(listen, "--transport", transport, "--echo") as address:
        done = await mux_send(
            address, "--transport", transport, "--streams", "3", "--bytes", "300K"
        )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert re.fullmatch(
        rf"{transport} to {re.escape(address)}: 3 x 300 KiB = 900 KiB in [\d.]+ s:"
        r" [\d.]+ MB/s \(echo verified \(sha256\)\)\n",
        out,
    ), out


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_sink(listen: str, transport: str) -> None:
    async with mux_server(listen, "--transport", transport, "--sink") as address:
        done = await mux_send(
            address, "--transport", transport, "--streams", "2", "--bytes", "1M",
            "--message-size", "1000",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert b"2 x 1 MiB = 2 MiB" in done.stdout
    assert b"(sink confirmed every byte)" in done.stdout


async def test_xtransport_ack_mode_and_frame_size(listen: str) -> None:
    options = ["--transport", "xtransport", "--ack", "--frame-size", "1024"]
    async with mux_server(listen, *options, "--echo") as address:
        done = await mux_send(address, *options, "--streams", "2", "--bytes", "100K")
    assert done.returncode == 0, done.stderr
    assert b"echo verified" in done.stdout


async def test_errors_are_one_line(tmp_path: Path) -> None:
    done = await mux_send(f"unix:{tmp_path}/nothing.sock", "--transport", "xtransport")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("virtrio: error: cannot connect to unix:")
    assert done.stderr.count(b"\n") == 1
    done = await mux_send("tcp://127.0.0.1:1", "--bytes", "lots")
    assert done.returncode == 2
    assert b"not a size: 'lots'" in done.stderr
    done = await mux_send("tcp://127.0.0.1:1", "--transport", "xtransport", "--frame-size", "16")
    assert done.returncode == 1
    assert b"max_frame_size 16 is out of range" in done.stderr


@pytest.mark.skipif(not Path("/dev/vsock").exists(), reason="no /dev/vsock on this machine")
async def test_serve_listens_on_vsock() -> None:
    # vsock "any port" is 2**32-1 (port 0 is a real port); no loopback to send through here
    async with mux_server("vsock://any:4294967295", "--transport", "xtransport", "--sink") as a:
        assert re.fullmatch(r"vsock://4294967295:\d+", a)
        assert a != "vsock://4294967295:4294967295"


async def test_a_stream_reset_mid_echo_ends_alone(go_yamux: Factory, listen: str) -> None:
    # the Go client resets one stream while its echo is under way and four others run: they
    # all complete, and so does a stream opened after the reset (the session lived on)
    async with mux_server(listen, "--echo") as address:
        peer = go_yamux("reset", connect=address, streams=5, bytes=2 * MiB, chunk=16 * 1024)
        status, output = await trio.to_thread.run_sync(peer.wait, 60)
    assert status == 0, output
    assert output.splitlines() == ["reset 1 mid-echo", f"echoed 4 x {2 * MiB} around a reset"]


async def test_clients_over_the_limit_are_refused_with_a_goaway(listen: str) -> None:
    from virtrio.channels import open_stream
    from virtrio.channels.yamux import GoAwayCode, open_mux

    async with mux_server(listen, "--echo", "--max-connections", "1") as address:
        first = await open_stream(address)
        async with open_mux(first, client=True) as session:
            stream = await session.open_stream()
            await stream.send_all(b"x")
            assert await stream.receive_some(1) == b"x"  # the first is being served
            second = await open_stream(address)
            with trio.fail_after(10):
                frame = await second.receive_some(12)
                assert await second.receive_some(1) == b""  # then closed
            assert frame == bytes([0, 3, 0, 0, 0, 0, 0, 0]) + GoAwayCode.INTERNAL_ERROR.to_bytes(
                4, "big"
            )
            await second.aclose()
