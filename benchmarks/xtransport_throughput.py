"""Message throughput and round trip over TCP loopback: virtrio's message API over xtransport
(several frame sizes, with and without acks) and over yamux, with and without middleware,
against a raw Trio socket ceiling.

There is no independent xtransport peer to compare with: kylin-x-kernel/xtransfer is a Rust
crate that is not packaged (crates.io is unreachable here), so every figure is virtrio to
virtrio; the raw socket (no framing at all) is the ceiling. For the Encryption middleware the
independent reference is TLS 1.3 (OpenSSL, through Python's ssl and trio.SSLStream) on the
same raw socket: what it costs the socket, beside what Encryption costs the yamux channel.
Messages are random bytes (so Compression has to try and give up), except the rows marked
"text" (log-like lines, which deflate well). Run:
``.venv/bin/python benchmarks/xtransport_throughput.py`` (``--help``: ``--only`` runs the cases
whose label contains a word, beside the raw socket, and writes no results file; ``--rounds``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import Row, Spread, own_cpu, write_results
from virtrio.channels import open_stream, serve_streams
from virtrio.channels.messaging import (
    ClientConfig,
    Compression,
    Encryption,
    MessageClient,
    MessageConnection,
    MessageServer,
    Middleware,
    ServerConfig,
    Transport,
    with_xtransport,
    with_yamux,
)
from virtrio.channels.xtransfer import XtransferConfig

TOTAL = 64 * 1024 * 1024
MESSAGE = 64 * 1024
ROUND_TRIPS = 2000
ROUNDS = 3
RANDOM = os.urandom(MESSAGE)
TEXT = b"".join(
    b"2026-12-01T19:%02d:%02d.%06d vm-%d qmp event=RESUME status=running\n"
    % (i % 60, i % 57, i, i % 7)
    for i in range(MESSAGE // 60 + 1)
)[:MESSAGE]
KEY = os.urandom(32)
#: CPU µs per MB (both ends: they share this process) of each throughput run, in run order.
CPU_US_PER_MB: list[float] = []


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server and a client context for TLS 1.3 with a fresh self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.minimum_version = ssl.TLSVersion.TLSv1_3
        server.load_cert_chain(cert_file, key_file)
        client = ssl.create_default_context(cafile=str(cert_file))
        client.minimum_version = ssl.TLSVersion.TLSv1_3
    return server, client


async def raw_socket(tls: bool = False) -> tuple[float, float]:
    """MB/s of 64 KiB writes, and the median 64-byte ping-pong in microseconds (on TLS 1.3
    if ``tls``)."""
    server_context, client_context = tls_contexts() if tls else (None, None)

    async def serve(raw: trio.SocketStream) -> None:
        if server_context is None:
            await handler(raw)
            return
        stream = trio.SSLStream(raw, server_context, server_side=True)
        await handler(stream)

    async def handler(stream: trio.abc.Stream) -> None:
        first = await stream.receive_some(1)
        if first == b"T":
            got = 0
            while got < TOTAL:
                got += len(await stream.receive_some(1 << 20))
            await stream.send_all(b"k")
        else:
            while data := await stream.receive_some(64):
                await stream.send_all(data)

    async def connect(address: object) -> trio.abc.Stream:
        raw = await open_stream(str(address))
        if client_context is None:
            return raw
        stream = trio.SSLStream(raw, client_context, server_hostname="localhost")
        await stream.do_handshake()
        return stream

    async with trio.open_nursery() as nursery:
        [address] = await nursery.start(serve_streams, "tcp://127.0.0.1:0", serve)
        chunk = RANDOM
        async with await connect(address) as stream:
            start, cpu = time.perf_counter(), own_cpu()
            await stream.send_all(b"T")
            for _ in range(TOTAL // MESSAGE):
                await stream.send_all(chunk)
            await stream.receive_some(1)
            throughput = TOTAL / (time.perf_counter() - start) / 1e6
            CPU_US_PER_MB.append((own_cpu() - cpu).total / (TOTAL / 1e6) * 1e6)
        async with await connect(address) as stream:
            await stream.send_all(b"P")
            samples = []
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                await stream.send_all(b"p" * 64)
                got = 0
                while got < 64:
                    got += len(await stream.receive_some(64))
                samples.append(time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return throughput, statistics.median(samples) * 1e6


async def message_api(
    transport: Transport, middleware: Sequence[Middleware] = (), payload: bytes = RANDOM
) -> tuple[float, float]:
    """The same two figures through MessageClient/MessageServer."""

    async def handler(connection: MessageConnection) -> None:
        mode = await connection.receive()
        if mode == b"T":
            got = 0
            while got < TOTAL:
                got += len(await connection.receive())
            await connection.send(b"k")
        else:
            async for message in connection:
                await connection.send(message)

    server = MessageServer(ServerConfig("tcp://127.0.0.1:0"), transport, middleware=middleware)
    async with trio.open_nursery() as nursery:
        [address] = await nursery.start(server.serve, handler)
        client = MessageClient(ClientConfig(address), transport, middleware=middleware)
        message = payload
        async with client.connect() as connection:
            start, cpu = time.perf_counter(), own_cpu()
            await connection.send(b"T")
            for _ in range(TOTAL // MESSAGE):
                await connection.send(message)
            await connection.receive()
            throughput = TOTAL / (time.perf_counter() - start) / 1e6
            CPU_US_PER_MB.append((own_cpu() - cpu).total / (TOTAL / 1e6) * 1e6)
        async with client.connect() as connection:
            await connection.send(b"P")
            samples = []
            for _ in range(ROUND_TRIPS):
                start = time.perf_counter()
                await connection.send(b"p" * 64)
                await connection.receive()
                samples.append(time.perf_counter() - start)
        nursery.cancel_scope.cancel()
    return throughput, statistics.median(samples) * 1e6


def transports() -> dict[str, Callable[[], Awaitable[tuple[float, float]]]]:
    cases: dict[str, Callable[[], Awaitable[tuple[float, float]]]] = {"raw trio socket": raw_socket}
    for label, config in [
        ("xtransport frame 4096 (default)", XtransferConfig()),
        ("xtransport frame 1024 (virga)", XtransferConfig(max_frame_size=1024)),
        ("xtransport frame 65551 (max)", XtransferConfig(max_frame_size=65551)),
        ("xtransport frame 65551 + acks", XtransferConfig(max_frame_size=65551, ack=True)),
    ]:
        cases[label] = lambda config=config: message_api(with_xtransport(config))  # type: ignore[misc]
    cases["message API over yamux"] = lambda: message_api(with_yamux())
    cases["yamux + Compression"] = lambda: message_api(with_yamux(), [Compression()])
    cases["yamux + Compression, text"] = lambda: message_api(with_yamux(), [Compression()], TEXT)
    cases["yamux + Encryption"] = lambda: message_api(with_yamux(), [Encryption(KEY)])
    cases["yamux + Compression + Encryption, text"] = lambda: message_api(
        with_yamux(), [Compression(), Encryption(KEY)], TEXT
    )
    cases["raw trio socket + TLS 1.3 (OpenSSL)"] = lambda: raw_socket(tls=True)
    return cases


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        metavar="WORD",
        help="run only the cases whose label contains WORD (repeatable; the raw socket always"
        " runs); no results file is written",
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rounds = args.rounds
    print(
        "No independent xtransport peer: kylin-x-kernel/xtransfer is an unpackaged Rust crate,\n"
        "so these are virtrio<->virtrio figures against a raw socket ceiling (TCP loopback).\n"
        f"Throughput: {TOTAL >> 20} MiB in {MESSAGE >> 10} KiB messages, one direction;"
        f" round trip: median of {ROUND_TRIPS} 64-byte echoes; best of {rounds} rounds.\n"
    )
    results: dict[str, tuple[float, float]] = {}
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    cases = transports()
    if args.only:
        cases = {
            label: case
            for label, case in cases.items()
            if label == "raw trio socket" or any(word in label for word in args.only)
        }
    for _ in range(rounds):
        for label, case in cases.items():
            throughput, rtt = await case()
            best = results.get(label, (0.0, float("inf")))
            results[label] = (max(best[0], throughput), min(best[1], rtt))
            rates.setdefault(label, []).append(throughput)
            cpu.setdefault(label, []).append(CPU_US_PER_MB[-1])
    ceiling, raw_rtt = results["raw trio socket"]
    print(f"{'':40} {'MB/s':>8} {'x raw':>7} {'RTT us':>8} {'x raw':>7}")
    for label, (throughput, rtt) in results.items():
        print(
            f"{label:40} {throughput:8.1f} {throughput / ceiling:7.2f}"
            f" {rtt:8.1f} {rtt / raw_rtt:7.2f}"
        )
    if args.only:
        print("\nCPU us per MB (both ends, one process), each round:")
        for label, figures in cpu.items():
            print(f"  {label:38} " + " ".join(f"{figure:6.0f}" for figure in figures))
        print("(--only: no results file written)")
        return
    plain, sealed = results["message API over yamux"], results["yamux + Encryption"]
    tls = results["raw trio socket + TLS 1.3 (OpenSSL)"]
    print(
        f"\nEncryption keeps {sealed[0] / plain[0]:.2f} of yamux's throughput;"
        f" TLS 1.3 keeps {tls[0] / ceiling:.2f} of the raw socket's."
    )
    print("\nCPU us per MB (both ends, one process), median of the rounds:")
    for label in ("raw trio socket", "xtransport frame 4096 (default)", "message API over yamux"):
        print(f"  {label:38} {statistics.median(cpu[label]):8.0f}")
    raw = "raw trio socket"
    rows = []
    for key, label in (
        ("xtransport.4k", "xtransport frame 4096 (default)"),
        ("messages.yamux", "message API over yamux"),
    ):
        rows.append(
            Row(
                key,
                results[label][0],
                "MB/s",
                "raw Trio socket",
                ceiling,
                cpu_us={
                    "virtrio": {"both ends": statistics.median(cpu[label])},
                    "raw Trio socket": {"both ends": statistics.median(cpu[raw])},
                },
                runs=Spread.of(rates[label]),
                anchor_runs=Spread.of(rates[raw]),
                note=f"best of {rounds} rounds, interleaved",
            )
        )
    write_results("xtransport_throughput", rows)


if __name__ == "__main__":
    trio.run(main)
