"""yamux throughput and stream-open round trip: virtrio and the Go reference (hashicorp/yamux)
in every pairing, over TCP loopback, with a raw Trio socket (no multiplexer) as the ceiling;
then virtrio beside a second independent implementation, js-libp2p's (@chainsafe/libp2p-yamux
on Node.js), when tests/peers/yamux_js is installed.

    .venv/bin/python benchmarks/mux_throughput.py [--quick] [--rounds N] [--window BYTES]

Each receiver runs in its own process (as the Go peers do), so no pairing shares a CPU with
itself. One stream carries 256 MiB, or 64 streams 4 MiB each; writes are 64 KiB. virtrio
auto-tunes its windows by default (up to 16 MiB, as rust-yamux does) while hashicorp's default
stays at 256 KiB, so a last pairing shows virtrio with auto-tuning off on both ends: the same
fixed 256 KiB windows as Go<->Go. Every figure is the best of N rounds (3 by default), the
rounds of all pairings interleaved, so a neighbour's burst on a shared machine hurts no pairing
more than another. Beside the stream open round trip it prints what Trio alone needs for the
same task structure (a reader, an acceptor, a handler spawned per message), the floor any Trio
multiplexer stands on.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._measure import Row, own_cpu, process_cpu, write_results  # noqa: E402
from tests.peers.yamux import build_go_peer  # noqa: E402
from tests.peers.yamux_js import FOLDER as JS_PEER, LIBRARY as JS_LIBRARY  # noqa: E402
from virtrio.channels._addresses import open_listeners, open_stream  # noqa: E402
from virtrio.channels.yamux import (  # noqa: E402
    MuxStream,
    SessionLostError,
    StreamResetError,
    open_mux,
)
from virtrio.errors import ConnectionLostError  # noqa: E402

MiB = 1024 * 1024
CHUNK = 64 * 1024
BLOCK = bytes(CHUNK)


# --- the child process: a virtrio sink/echo server, or a raw socket sink -----------------------


async def serve(kind: str, window: int) -> None:
    fixed = kind == "sink-fixed"  # no window auto-tuning, as hashicorp
    kind = "sink" if fixed else kind
    listeners = await open_listeners("tcp://127.0.0.1:0")
    host, port = listeners[0].socket.getsockname()[:2]
    print(f"listening tcp://{host}:{port}", flush=True)

    async def sink(stream: MuxStream) -> None:
        total = 0
        while data := await stream.receive_some():
            total += len(data)
        await stream.send_all(f"{total} -".encode())
        await stream.aclose()

    async def echo(stream: MuxStream) -> None:
        while data := await stream.receive_some():
            await stream.send_all(data)
        await stream.aclose()

    async def connection(transport: trio.SocketStream) -> None:
        if kind == "raw-open":
            await open_floor(transport)
            return
        if kind == "raw":
            total = 0
            while data := await transport.receive_some(256 * 1024):
                total += len(data)
            await transport.send_all(str(total).encode())
            await transport.aclose()
            return
        handler = sink if kind == "sink" else echo

        async def guarded(stream: MuxStream) -> None:
            with contextlib.suppress(StreamResetError, SessionLostError):  # the client left
                await handler(stream)

        async with (
            open_mux(
                transport, client=False, window=window, max_window=None if fixed else window * 64
            ) as session,
            trio.open_nursery() as nursery,
        ):
            while True:
                try:
                    stream = await session.accept_stream()
                except ConnectionLostError:
                    return  # the client is done
                nursery.start_soon(guarded, stream)

    await trio.serve_listeners(connection, listeners)


async def open_floor(transport: trio.SocketStream) -> None:
    """What a stream open costs Trio alone: each message goes from the connection's reader
    to an acceptor task, which spawns a handler that replies, as a multiplexer's server does
    per stream, but with no multiplexer at all."""
    send, receive = trio.open_memory_channel[bytes](1)

    async def handler(data: bytes) -> None:
        await trio.lowlevel.checkpoint()  # a receive_some that finds its data there
        await transport.send_all(data)

    async def acceptor(nursery: trio.Nursery) -> None:
        async for data in receive:
            nursery.start_soon(handler, data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(acceptor, nursery)
        while data := await transport.receive_some():
            await send.send(data)
        nursery.cancel_scope.cancel()


async def raw_open_rtt(address: str, count: int) -> float:
    async with await open_stream(address) as stream:
        begin = time.perf_counter()
        for _ in range(count):
            await stream.send_all(b"\1")
            assert await stream.receive_some(1) == b"\1"
        return (time.perf_counter() - begin) / count * 1e6


# --- the measuring side -------------------------------------------------------------------------


def start(argv: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    where = line.split(" ", 1)[1]
    return proc, where if where.startswith("tcp://") else "tcp://" + where.split(":", 1)[1]


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait()


async def virtrio_send(
    address: str, streams: int, size: int, window: int, tuned: bool = True
) -> float:
    stream = await open_stream(address)
    max_window = window * 64 if tuned else None
    async with open_mux(stream, client=True, window=window, max_window=max_window) as session:

        async def one() -> None:
            stream = await session.open_stream()
            for _ in range(size // CHUNK):
                await stream.send_all(BLOCK)
            await stream.send_eof()
            reply = bytearray()
            while data := await stream.receive_some():
                reply += data
            assert reply.startswith(f"{size} ".encode()), reply

        begin = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(streams):
                nursery.start_soon(one)
        return streams * size / (time.perf_counter() - begin) / 1e6


async def raw_send(address: str, size: int) -> float:
    stream = await open_stream(address)
    begin = time.perf_counter()
    for _ in range(size // CHUNK):
        await stream.send_all(BLOCK)
    await stream.send_eof()
    reply = await stream.receive_some()
    assert int(reply) == size
    elapsed = time.perf_counter() - begin
    await stream.aclose()
    return size / elapsed / 1e6


async def virtrio_open_rtt(address: str, count: int) -> float:
    async with open_mux(await open_stream(address), client=True) as session:
        begin = time.perf_counter()
        for _ in range(count):
            stream = await session.open_stream()
            await stream.send_all(b"\1")
            assert await stream.receive_some(1) == b"\1"
            await stream.aclose()
        return (time.perf_counter() - begin) / count * 1e6


def peer_rate(argv: list[str]) -> float:
    """Run a peer's send client; its MB/s (it prints ``sent N in T s: R MB/s``)."""
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return float(out.split(": ")[1].split()[0])


def go_send(go: str, address: str, streams: int, size: int, window: int) -> float:
    return peer_rate(
        [
            *(go, "-connect", address.replace("tcp://", "tcp:"), "-mode", "send", "-hash=false"),
            *("-streams", str(streams), "-bytes", str(size), "-window", str(window)),
        ]
    )


def js_send(address: str, streams: int, size: int) -> float:
    node = [shutil.which("node") or "node", str(JS_PEER / "peer.mjs")]
    return peer_rate(
        [
            *(*node, "--connect", address.replace("tcp://", "tcp:"), "--mode", "send"),
            *("--streams", str(streams), "--bytes", str(size)),
        ]
    )


def go_open_rtt(go: str, address: str, count: int) -> float:
    out = subprocess.run(
        [go, "-connect", address.replace("tcp://", "tcp:"), "-mode", "open", "-count", str(count)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split()[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--serve", choices=["sink", "sink-fixed", "echo", "raw", "raw-open"], help=argparse.SUPPRESS
    )
    parser.add_argument("--window", type=int, default=256 * 1024, help="per-stream window")
    parser.add_argument("--quick", action="store_true", help="1/8 of the bytes")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve, args.window)
        return

    go = build_go_peer()
    me = [sys.executable, __file__, "--window", str(args.window), "--serve"]
    win = ["-window", str(args.window)]
    scale = 8 if args.quick else 1
    shapes = [
        ("1 stream x 256 MiB", 1, 256 * MiB // scale),
        ("64 streams x 4 MiB", 64, 4 * MiB // scale),
    ]
    best: dict[tuple[str, str], float] = {}
    # CPU us per MB of virtrio<->virtrio, per shape: sender (this process), receiver (/proc)
    cpu: dict[str, list[tuple[float, float]]] = {}
    servers = {
        "virtrio": start([*me, "sink"]),
        "virtrio, fixed window": start([*me, "sink-fixed"]),
        "Go": start([go, "-mode", "sink", "-hash=false", "-listen", "tcp:127.0.0.1:0", *win]),
    }
    raw = start([*me, "raw"])
    try:
        for _ in range(args.rounds):
            for shape, streams, size in shapes:
                for sender in ("virtrio", "Go"):
                    for receiver in ("virtrio", "Go"):
                        address = servers[receiver][1]
                        if sender == "virtrio":
                            pid = servers[receiver][0].pid
                            mine, theirs = own_cpu(), process_cpu(pid)
                            rate = trio.run(virtrio_send, address, streams, size, args.window)
                            if receiver == "virtrio":
                                per = streams * size / 1e6 / 1e6
                                cpu.setdefault(shape, []).append(
                                    (
                                        (own_cpu() - mine).total / per,
                                        (process_cpu(pid) - theirs).total / per,
                                    )
                                )
                        else:
                            rate = go_send(go, address, streams, size, args.window)
                        key = (shape, f"{sender} -> {receiver}")
                        best[key] = max(best.get(key, 0.0), rate)
                address = servers["virtrio, fixed window"][1]
                rate = trio.run(virtrio_send, address, streams, size, args.window, False)
                key = (shape, "virtrio -> virtrio, fixed window")
                best[key] = max(best.get(key, 0.0), rate)
            rate = trio.run(raw_send, raw[1], 256 * MiB // scale)
            best["raw", "raw"] = max(best.get(("raw", "raw"), 0.0), rate)
        for (shape, pair), rate in best.items():
            if shape != "raw":
                print(f"{shape:20} {pair:>32} {rate:8.0f} MB/s")
        ceiling = best["raw", "raw"]
        print(f"{'1 stream x 256 MiB':20} {'raw Trio socket':>32} {ceiling:8.0f} MB/s (ceiling)")
    finally:
        for proc, _ in [*servers.values(), raw]:
            stop(proc)

    echo_me, echo_go, floor = (
        start([*me, "echo"]),
        start([go, "-mode", "echo", "-listen", "tcp:127.0.0.1:0"]),
        start([*me, "raw-open"]),
    )
    try:
        count = 2000 // scale
        rtt_me = rtt_go = rtt_floor = rtt_me_go = rtt_go_me = float("inf")
        for _ in range(args.rounds):
            rtt_me = min(rtt_me, trio.run(virtrio_open_rtt, echo_me[1], count))
            rtt_go = min(rtt_go, go_open_rtt(go, echo_go[1], count))
            rtt_floor = min(rtt_floor, trio.run(raw_open_rtt, floor[1], count))
            rtt_me_go = min(rtt_me_go, trio.run(virtrio_open_rtt, echo_go[1], count))
            rtt_go_me = min(rtt_go_me, go_open_rtt(go, echo_me[1], count))
    finally:
        for proc, _ in (echo_me, echo_go, floor):
            stop(proc)

    print("\nratios (targets from issue 3)")
    for shape, _, _ in shapes:
        got = {pair: rate for (s, pair), rate in best.items() if s == shape}
        gogo = got["Go -> Go"]
        print(f"  {shape}: Go<->Go {gogo:.0f} MB/s")
        mine, to_go = got["virtrio -> virtrio"], got["virtrio -> Go"]
        print(f"    virtrio<->virtrio / Go<->Go = {mine / gogo:.2f}  (target >= 1)")
        print(f"    virtrio->Go       / Go<->Go = {to_go / gogo:.2f}  (target >= 0.8)")
        print(f"    Go->virtrio       / Go<->Go = {got['Go -> virtrio'] / gogo:.2f}")
        fixed = got["virtrio -> virtrio, fixed window"]
        print(f"    virtrio<->virtrio / Go<->Go = {fixed / gogo:.2f}  with Go's fixed window")
        print(f"    virtrio<->virtrio / raw     = {got['virtrio -> virtrio'] / ceiling:.2f}")
    rows = []
    for shape, _, _ in shapes:
        got = {pair: rate for (s, pair), rate in best.items() if s == shape}
        samples = cpu.get(shape, [])
        cpu_us = {
            "virtrio": {
                "sender": sum(a for a, _ in samples) / max(1, len(samples)),
                "receiver": sum(b for _, b in samples) / max(1, len(samples)),
            }
        }
        streams = "64streams" if shape.startswith("64") else "1stream"
        if streams == "64streams":
            rows.append(
                Row(
                    "yamux.64streams",
                    got["virtrio -> virtrio"],
                    "MB/s",
                    "raw socket",
                    ceiling,
                    cpu_us=cpu_us,
                    note=f"best of {args.rounds} rounds",
                )
            )
        rows.append(
            Row(
                f"yamux.go.{streams}",
                got["virtrio -> virtrio"],
                "MB/s",
                "Go↔Go",
                got["Go -> Go"],
                cpu_us=cpu_us,
                note=f"best of {args.rounds} rounds",
            )
        )
    write_results("mux_throughput", rows)
    ratio = rtt_me / rtt_go
    print(f"  open round trip: virtrio {rtt_me:.0f} us, Go {rtt_go:.0f} us")
    print(f"    virtrio / Go = {ratio:.2f}  (target <= 1.5)")
    print(
        f"    Trio alone, same tasks, no multiplexer: {rtt_floor:.0f} us "
        f"({rtt_floor / rtt_go:.2f} x Go)"
    )
    print(
        f"    mixed: virtrio client -> Go server {rtt_me_go:.0f} us ({rtt_me_go / rtt_go:.2f} x), "
        f"Go client -> virtrio server {rtt_go_me:.0f} us ({rtt_go_me / rtt_go:.2f} x)"
    )
    if JS_LIBRARY.is_dir():
        js_pairings(me, shapes, args.rounds)
    else:
        print(f"\n(no JS peer: npm ci --prefix {JS_PEER} to compare with js-libp2p's yamux)")


def js_pairings(me: list[str], shapes: list[tuple[str, int, int]], rounds: int) -> None:
    """virtrio beside js-libp2p's yamux (Node.js): every pairing, best of ``rounds``."""
    js_sink = [shutil.which("node") or "node", str(JS_PEER / "peer.mjs"), "--mode", "sink"]
    servers = {
        "virtrio": start([*me, "sink"]),
        "JS": start([*js_sink, "--hash", "false", "--listen", "tcp:127.0.0.1:0"]),
    }
    best: dict[tuple[str, str], float] = {}
    try:
        for _ in range(rounds):
            for shape, streams, size in shapes:
                for sender in ("virtrio", "JS"):
                    for receiver in ("virtrio", "JS"):
                        address = servers[receiver][1]
                        if sender == "virtrio":
                            rate = trio.run(virtrio_send, address, streams, size, 256 * 1024)
                        else:
                            rate = js_send(address, streams, size)
                        key = (shape, f"{sender} -> {receiver}")
                        best[key] = max(best.get(key, 0.0), rate)
    finally:
        for proc, _ in servers.values():
            stop(proc)
    print("\nbeside js-libp2p's yamux (@chainsafe/libp2p-yamux on Node.js), best of", rounds)
    for shape, _, _ in shapes:
        js = best[shape, "JS -> JS"]
        print(f"  {shape}: JS<->JS {js:.0f} MB/s")
        for pair in ("virtrio -> virtrio", "virtrio -> JS", "JS -> virtrio"):
            rate = best[shape, pair]
            print(f"    {pair:18} {rate:8.0f} MB/s  {rate / js:5.2f} x JS<->JS")


if __name__ == "__main__":
    main()
