"""``virtrio mux serve|send``: diagnose a link like socat/iperf, over yamux or xtransport.

``serve ADDRESS --echo|--sink`` answers every connection (and every yamux stream); ``send
ADDRESS --streams N --bytes M`` pushes M bytes on each of N lanes at once — N yamux streams on
one connection, or N xtransport connections (xtransport does not multiplex) — checks what comes
back and prints the throughput. A lane ends with a half-close (on xtransport: an empty message,
as ack mode must keep acknowledging); an echo server echoes then half-closes, a sink server
answers with the byte count it received (8 bytes, big-endian).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    import trio

    from virtrio.channels import Address
    from virtrio.channels.xtransfer import XtransferConfig

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_CHUNK = 64 * 1024


def parse_size(text: str) -> int:
    """``1500``, ``64K``, ``1M``, ``2G`` (binary units, optional ``iB``/``B``) -> bytes."""
    match = re.fullmatch(r"(\d+)\s*([KMG]?)(?:i?B)?", text.strip(), re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1500, 64K, 16M)")
    return int(match[1]) * _UNITS[match[2].upper()]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio mux serve`` and ``virtrio mux send``."""
    parser = sub.add_parser(
        "mux",
        help="serve or load-test a yamux/xtransport link",
        description="socat/iperf for a multiplexer: serve a link, or push bytes through it.",
    )
    actions = parser.add_subparsers(dest="mux_command", metavar="ACTION", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("address", help="vsock://CID:PORT, tcp://HOST:PORT or unix:/PATH")
    common.add_argument(
        "--transport", choices=["yamux", "xtransport"], default="yamux", help="default yamux"
    )
    common.add_argument(
        "--frame-size",
        type=int,
        default=4096,
        help="xtransport max frame size, header included (17..65551, default 4096)",
    )
    common.add_argument("--ack", action="store_true", help="xtransport stop-and-wait acks")

    serve = actions.add_parser(
        "serve",
        parents=[common],
        help="answer connections",
        epilog="example: virtrio mux serve tcp://127.0.0.1:5000 --echo",
    )
    mode = serve.add_mutually_exclusive_group(required=True)
    mode.add_argument("--echo", action="store_true", help="send back what arrives")
    mode.add_argument("--sink", action="store_true", help="count and discard what arrives")
    serve.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="connections served at once; more are refused (default 64)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="on SIGINT/SIGTERM, seconds running connections may take to finish (default 5)",
    )
    serve.set_defaults(run=run_serve)

    send = actions.add_parser(
        "send",
        parents=[common],
        help="push bytes and print the throughput",
        epilog="example: virtrio mux send tcp://127.0.0.1:5000 --streams 8 --bytes 16M",
    )
    send.add_argument("--streams", type=int, default=1, help="parallel lanes (default 1)")
    send.add_argument("--bytes", type=parse_size, default=1 << 20, help="per lane (default 1M)")
    send.add_argument(
        "--message-size", type=parse_size, default=_CHUNK, help="bytes per write (default 64K)"
    )
    send.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    send.set_defaults(run=run_send)


class Lane(Protocol):
    """One yamux stream or one xtransport connection, as the two commands use it."""

    async def write(self, data: bytes) -> None: ...

    async def read(self) -> bytes: ...  # b"" at the peer's half-close

    async def write_eof(self) -> None: ...


class _StreamLane:
    """A lane over a yamux stream, or over an xtransport connection as an
    :class:`~virtrio.channels.xtransfer.XtransferStream` (its half-close is an empty
    message: in ack mode the peer's packets still need Acks)."""

    def __init__(self, stream: trio.abc.HalfCloseableStream) -> None:
        self.stream = stream

    async def write(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read(self) -> bytes:
        return bytes(await self.stream.receive_some(256 * 1024))

    async def write_eof(self) -> None:
        await self.stream.send_eof()


async def _answer(lane: Lane, echo: bool) -> None:
    total = 0
    while data := await lane.read():
        total += len(data)
        if echo:
            await lane.write(data)
    if not echo:
        await lane.write(total.to_bytes(8, "big"))
    await lane.write_eof()


def _xtransfer_config(args: argparse.Namespace) -> XtransferConfig:
    from virtrio.channels.xtransfer import XtransferConfig

    return XtransferConfig(max_frame_size=args.frame_size, ack=args.ack)


async def run_serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM, then give running connections ``--grace`` seconds."""
    import signal

    import trio

    from virtrio.channels import serve_streams

    async def connection(stream: trio.SocketStream) -> None:
        if args.transport == "xtransport":
            from virtrio.channels.xtransfer import XtransferStream, open_xtransfer

            async with open_xtransfer(stream, _xtransfer_config(args)) as channel:
                await _answer(_StreamLane(XtransferStream(channel)), args.echo)
        else:
            await _serve_yamux(stream, args.echo, args.grace)

    async def refuse(stream: trio.SocketStream, reason: str) -> None:
        # xtransport has no way to say why; a yamux client reads a GoAway (internal error)
        if args.transport == "yamux":
            from virtrio.channels.yamux import FrameType, GoAwayCode
            from virtrio.channels.yamux._frames import encode_header

            await stream.send_all(encode_header(FrameType.GO_AWAY, 0, 0, GoAwayCode.INTERNAL_ERROR))

    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            addresses = await nursery.start(
                lambda task_status: serve_streams(
                    args.address,
                    connection,
                    max_connections=args.max_connections,
                    refuse=refuse,
                    grace=args.grace,
                    name="mux serve",
                    task_status=task_status,
                )
            )
            mode = "echo" if args.echo else "sink"
            for address in addresses:
                print(f"serving {args.transport} {mode} on {address}", flush=True)
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()  # stop accepting; connections get --grace seconds
    return 0


async def _serve_yamux(stream: trio.SocketStream, echo: bool, grace: float) -> None:
    """Answer every stream the client opens until the session ends; a stream that fails (the
    client resets it mid-echo) ends alone, its session and the other streams go on."""
    from virtrio.channels import StreamServer
    from virtrio.channels.yamux import MuxListener, MuxStream, open_mux

    async def answer(mux_stream: MuxStream) -> None:
        await _answer(_StreamLane(mux_stream), echo)

    async with open_mux(stream, client=False) as session:
        server: StreamServer[MuxStream] = StreamServer(
            answer, grace=grace, name=f"yamux session from {_peer_name(stream)}"
        )
        await server.serve_listeners([MuxListener(session)])


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()) or "a unix socket"
    except OSError:
        return "a client"


async def run_send(args: argparse.Namespace) -> int:
    """Push the bytes, check the answers, print the throughput."""
    import trio

    from virtrio.channels import open_stream, parse_address
    from virtrio.errors import ConfigError, ProtocolError, VirtrioTimeoutError
    from virtrio.primitives import open_service_nursery

    if args.streams < 1 or args.message_size < 1:
        raise ConfigError("--streams and --message-size must be at least 1")
    address = parse_address(args.address)
    pattern = (bytes(range(256)) * (args.message_size // 256 + 1))[: args.message_size]
    answers: list[_Answer] = []

    async def lane_run(lane: Lane) -> None:
        answers.append(await _drive(lane, args.bytes, pattern))

    start = time.perf_counter()
    try:
        with trio.fail_after(args.timeout):
            if args.transport == "xtransport":
                from virtrio.channels.xtransfer import XtransferStream, open_xtransfer

                config = _xtransfer_config(args)

                async def one() -> None:
                    stream = await open_stream(address, connect_timeout=args.timeout)
                    async with open_xtransfer(stream, config) as channel:
                        await lane_run(_StreamLane(XtransferStream(channel)))

                async with open_service_nursery() as nursery:
                    for _ in range(args.streams):
                        nursery.start_soon(one)
            else:
                await _send_yamux(address, args, lane_run)
    except trio.TooSlowError:
        raise VirtrioTimeoutError(
            f"mux send to {address}: not done in {args.timeout:g} s"
        ) from None
    elapsed = time.perf_counter() - start
    modes = {_verdict(answer, args.bytes, pattern) for answer in answers}
    if len(modes) != 1 or "mismatch" in "".join(modes):
        raise ProtocolError(f"the server's answers do not match what was sent: {sorted(modes)}")
    total = args.bytes * args.streams
    print(
        f"{args.transport} to {address}: {args.streams} x {_human(args.bytes)}"
        f" = {_human(total)} in {elapsed:.3f} s: {total / elapsed / 1e6:.1f} MB/s"
        f" ({modes.pop()})"
    )
    return 0


async def _send_yamux(
    address: Address, args: argparse.Namespace, lane_run: Callable[[Lane], Awaitable[None]]
) -> None:
    """N streams on one yamux session."""
    from virtrio.channels import open_stream
    from virtrio.channels.yamux import open_mux
    from virtrio.primitives import open_service_nursery

    stream = await open_stream(address, connect_timeout=args.timeout)
    async with open_mux(stream, client=True) as session:

        async def one() -> None:
            mux_stream = await session.open_stream()
            async with mux_stream:
                await lane_run(_StreamLane(mux_stream))

        async with open_service_nursery() as nursery:
            for _ in range(args.streams):
                nursery.start_soon(one)


@attrs.frozen
class _Answer:
    """What came back on one lane: its size, its SHA-256, and its first 8 bytes."""

    count: int
    digest: bytes
    head: bytes


def _pieces(size: int, pattern: bytes) -> Iterator[bytes]:
    """The writes that send ``size`` bytes of ``pattern`` repeated."""
    while size:
        piece = pattern[: min(size, len(pattern))]
        yield piece
        size -= len(piece)


async def _drive(lane: Lane, size: int, pattern: bytes) -> _Answer:
    """Write ``size`` bytes while reading the answer."""
    from virtrio.primitives import open_service_nursery

    received = hashlib.sha256()
    head = bytearray()
    count = 0

    async def writer() -> None:
        for piece in _pieces(size, pattern):
            await lane.write(piece)
        await lane.write_eof()

    async def reader() -> None:
        nonlocal count
        while data := await lane.read():
            count += len(data)
            received.update(data)
            if len(head) < 8:
                head.extend(data[: 8 - len(head)])

    async with open_service_nursery() as nursery:
        nursery.start_soon(writer)
        nursery.start_soon(reader)
    return _Answer(count, received.digest(), bytes(head))


def _verdict(answer: _Answer, size: int, pattern: bytes) -> str:
    """Say what the server did: echoed every byte, or counted them as a sink. What was sent
    is hashed only here, after the clock stopped."""
    if answer.count == size:
        sent = hashlib.sha256()
        for piece in _pieces(size, pattern):
            sent.update(piece)
        if answer.digest == sent.digest():
            return "echo verified (sha256)"
    if answer.count == 8 and int.from_bytes(answer.head, "big") == size:
        return "sink confirmed every byte"
    return f"mismatch: sent {size} bytes, got back {answer.count}"


def _human(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"
