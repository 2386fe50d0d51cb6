"""Terminal daemon benchmark: output throughput, input→echo round trip, memory per session.

Run: ``.venv/bin/python benchmarks/pty.py [--size-mb 100] [--runs 3]``. In the same run it
measures the anchors: the same ``cat`` inside tmux (a detached session: tmux reads the PTY and
emulates the terminal) and through a bare PTY read by a plain blocking loop, and prints ratios.
The cat runs of all contenders are interleaved, ``--runs`` rounds of them (and as many rounds of
the echo round trips, the best median kept for each side); beside the median and spread of each
it prints the CPU each side spent per MB (the daemon and the tmux server from /proc, the
subscribers and the bare loop from getrusage), which a busy machine does not skew.

The daemon runs as its own process (``python -m virtrio pty-daemon``), like the real thing;
the subscribers are SDK clients in this process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._measure import Meter, Row, Spread, Usage, write_results
from virtrio.channels.pty import Exit, Output, PtyClient, open_pty_client

LINE = b"The quick brown fox jumps over the lazy dog; 0123456789 !@#$%^&*() -_=+ [] {}\n"


def make_file(folder: Path, size: int) -> Path:
    path = folder / "big.txt"
    block = LINE * (1 << 20 // len(LINE) + 1)
    with path.open("wb") as f:
        written = 0
        while written < size:
            chunk = block[: size - written]
            f.write(chunk)
            written += len(chunk)
    return path


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


# ---- anchors ---------------------------------------------------------------------------------


def bare_pty_cat(path: Path) -> Usage:
    """Reading ``cat path`` from a PTY master with a blocking loop (one op per MB)."""
    master, slave = os.openpty()
    meter = Meter(own="reader")
    meter.__enter__()
    proc = subprocess.Popen(
        ["cat", str(path)], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL
    )
    os.close(slave)
    while True:
        try:
            if not os.read(master, 65536):
                break
        except OSError:  # EIO: cat exited and its output is drained
            break
    meter.__exit__(None, None, None)
    proc.wait()
    os.close(master)
    return meter.usage(max(1, path.stat().st_size // 1_000_000))


def bare_pty_round_trip(count: int) -> list[float]:
    """Byte → ``cat`` in raw mode → back, on a bare PTY."""
    pid, master = os.forkpty()
    if pid == 0:  # child
        os.execvp("sh", ["sh", "-c", "stty raw -echo; echo ready; exec cat"])
    buffer = b""
    while b"ready" not in buffer:
        buffer += os.read(master, 1024)
    times = []
    for _ in range(count):
        start = time.perf_counter()
        os.write(master, b"a")
        got = b""
        while b"a" not in got:
            got += os.read(master, 1024)
        times.append(time.perf_counter() - start)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    os.close(master)
    return times


def tmux_cat(tmux: str, path: Path, folder: Path) -> Usage:
    """``cat path`` inside a detached tmux session (tmux parses all of it), one op per MB."""
    sock = str(folder / "tmux.sock")
    base = [tmux, "-S", sock, "-f", "/dev/null"]
    subprocess.run([*base, "new-session", "-d", "-x", "80", "-y", "24", "sh"], check=True)
    try:
        pid = int(subprocess.run([*base, "display", "-p", "#{pid}"], capture_output=True).stdout)
        with (meter := Meter(peers={"tmux": pid}, own="client")):
            subprocess.run(
                [*base, "new-window", "-d", f"cat {path}; {tmux} -S {sock} wait-for -S done"],
                check=True,
            )
            subprocess.run([*base, "wait-for", "done"], check=True)
        return meter.usage(max(1, path.stat().st_size // 1_000_000))
    finally:
        subprocess.run([*base, "kill-server"], check=False)


def tmux_memory_per_window(tmux: str, folder: Path, count: int) -> float:
    sock = str(folder / "tmux-mem.sock")
    base = [tmux, "-S", sock, "-f", "/dev/null"]
    subprocess.run([*base, "new-session", "-d", "-x", "80", "-y", "24", "sh"], check=True)
    try:
        pid = int(subprocess.run([*base, "display", "-p", "#{pid}"], capture_output=True).stdout)
        before = rss_kib(pid)
        for _ in range(count):
            subprocess.run([*base, "new-window", "-d", "sh"], check=True)
        time.sleep(0.5)
        return (rss_kib(pid) - before) / count
    finally:
        subprocess.run([*base, "kill-server"], check=False)


# ---- through the daemon ----------------------------------------------------------------------


async def drain_to_exit(client: PtyClient, session: int) -> int:
    received = 0
    async for event in client.events():
        if isinstance(event, Output) and event.session == session:
            received += len(event.data)
        elif isinstance(event, Exit) and event.session == session:
            return received
    raise RuntimeError(f"connection lost: {client.closed_reason}")


async def daemon_cat(
    socket: Path, path: Path, size: int, subscribers: int, pid: int
) -> tuple[Usage, list[int]]:
    """Until every subscriber has all of ``cat path`` and the exit (one op per MB)."""
    async with open_pty_client(socket) as control:
        sid = await control.create(command="/bin/sh", args=["-c", f"read go; cat {path}"])
        received: list[int] = []
        async with trio.open_nursery() as nursery:
            ready = trio.Event()
            attached = 0

            async def subscriber() -> None:
                nonlocal attached
                async with open_pty_client(socket) as client:
                    await client.attach(sid)
                    attached += 1
                    if attached == subscribers:
                        ready.set()
                    received.append(await drain_to_exit(client, sid))

            for _ in range(subscribers):
                nursery.start_soon(subscriber)
            await ready.wait()
            meter = Meter(peers={"daemon": pid}, own="subscribers")
            meter.__enter__()
            await control.input(sid, b"go\n")
        meter.__exit__(None, None, None)
        return meter.usage(max(1, size // 1_000_000)), received


async def daemon_round_trip(socket: Path, count: int) -> list[float]:
    async with open_pty_client(socket) as client:
        script = "stty raw -echo; echo ready; exec cat"
        sid = await client.create(command="/bin/sh", args=["-c", script])
        await client.attach(sid)
        seen = b""
        while b"ready" not in seen:
            event = await client.events().receive()
            if isinstance(event, Output):
                seen += event.data
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await client.input(sid, b"a", wait=False)
            got = b""
            while b"a" not in got:
                event = await client.events().receive()
                if isinstance(event, Output):
                    got += event.data
            times.append(time.perf_counter() - start)
        await client.kill(sid)
        return times


async def daemon_memory_per_session(socket: Path, pid: int, count: int) -> float:
    async with open_pty_client(socket) as client:
        before = rss_kib(pid)
        for _ in range(count):
            await client.create(command="/bin/sh")
        await trio.sleep(0.5)  # let each shell print its prompt and the daemon read it
        after = rss_kib(pid)
        for info in await client.list():
            await client.kill(info.session)
        return (after - before) / count


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def cpu_line(usages: list[Usage]) -> str:
    """CPU µs per MB of each side, summed over the runs."""
    total = usages[0]
    for usage in usages[1:]:
        total = total + usage
    return ", ".join(f"{side} {us:,.0f}" for side, us in total.cpu_us_per_op().items())


def cpu_of(usages: list[Usage]) -> dict[str, float]:
    total = usages[0]
    for usage in usages[1:]:
        total = total + usage
    return total.cpu_us_per_op()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="interleaved rounds of the cat runs and of the echo round trips",
    )
    parser.add_argument("--round-trips", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=50, help="for memory per session")
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("tmux is not installed (apt-get install tmux): no anchor to compare with")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="virtrio-bench-pty-") as tmp:
        folder = Path(tmp)
        path = make_file(folder, size)
        socket = folder / "d" / "socket"
        env = {**os.environ, "RUST_PTY_SOCKET_PATH": str(socket)}
        daemon = await trio.lowlevel.open_process(
            [sys.executable, "-m", "virtrio", "pty-daemon"], env=env, stdout=subprocess.PIPE
        )
        try:
            assert daemon.stdout is not None
            banner = b""
            with trio.fail_after(10):  # it prints its socket path once listening
                while b"listening" not in banner:
                    banner += await daemon.stdout.receive_some(1024)
            # first, while the daemon's heap is fresh
            print(f"memory per idle session ({args.sessions} sessions of sh)")
            per = await daemon_memory_per_session(socket, daemon.pid, args.sessions)
            print(f"  virtrio daemon RSS: {per:8.1f} KiB per session")
            tmux_per = tmux_memory_per_window(tmux, folder, args.sessions)
            print(f"  tmux server RSS:    {tmux_per:8.1f} KiB per window")
            if tmux_per > 0:
                print(f"  ratio daemon/tmux:  {per / tmux_per:.2f}x")
            rows.append(Row("pty.idle_memory", per, "KiB", "tmux", tmux_per))

            mb = size / 1e6
            print(f"cat of {args.size_mb} MiB ({size} bytes), MB = 10^6 bytes, {args.runs} runs")
            runs: dict[str, list[Usage]] = {"bare": [], "tmux": [], "1": [], "10": []}
            incomplete = []
            for _ in range(args.runs):
                runs["bare"].append(bare_pty_cat(path))
                runs["tmux"].append(tmux_cat(tmux, path, folder))
                for subscribers in (1, 10):
                    usage, received = await daemon_cat(socket, path, size, subscribers, daemon.pid)
                    runs[str(subscribers)].append(usage)
                    if not all(r >= size for r in received):
                        incomplete.append(f"{subscribers}: {min(received)} of {size} bytes")
            if incomplete:
                raise SystemExit(f"INCOMPLETE output through the daemon: {incomplete}")
            rates = {k: Spread.of(mb / u.wall for u in v) for k, v in runs.items()}
            labels = {
                "bare": "bare PTY (blocking read loop)",
                "tmux": "tmux (detached session)",
                "1": "virtrio daemon, 1 subscriber",
                "10": "virtrio daemon, 10 subscribers",
            }
            for key, label in labels.items():
                print(f"  {label:31} {rates[key].describe('.1f')} MB/s each")
                print(f"  {'':31} CPU us per MB: {cpu_line(runs[key])}")
            tmux_rate = rates["tmux"].median
            for key in ("1", "10"):
                print(
                    f"  ratio daemon({key})/tmux throughput: {rates[key].median / tmux_rate:.2f}x"
                )
            print(
                f"  ratio daemon(1)/bare PTY:         "
                f"{rates['1'].median / rates['bare'].median:.2f}x"
            )
            for key in ("1", "10"):
                rows.append(
                    Row(
                        f"pty.cat{key}",
                        rates[key].median,
                        "MB/s",
                        "tmux",
                        tmux_rate,
                        cpu_us={"virtrio": cpu_of(runs[key]), "tmux": cpu_of(runs["tmux"])},
                        runs=rates[key],
                        anchor_runs=rates["tmux"],
                        note=f"bare PTY {rates['bare'].median:.1f} MB/s",
                    )
                )

            print(
                f"input -> echo round trip (raw-mode cat), {args.round_trips} round trips,"
                f" {args.runs} interleaved rounds (median of each; best round counts)"
            )
            rounds: dict[str, list[list[float]]] = {"bare PTY": [], "virtrio daemon": []}
            meter = Meter(peers={"daemon": daemon.pid}, own="client")
            usages: list[Usage] = []
            for _ in range(args.runs):
                rounds["bare PTY"].append(bare_pty_round_trip(args.round_trips))
                with meter:
                    rounds["virtrio daemon"].append(
                        await daemon_round_trip(socket, args.round_trips)
                    )
                usages.append(meter.usage(args.round_trips))
            best: dict[str, float] = {}
            for name, samples in rounds.items():
                medians = [statistics.median(times) for times in samples]
                best[name] = min(medians)
                times = min(samples, key=statistics.median)
                times.sort()
                p99 = times[int(len(times) * 0.99) - 1]
                spread = " ".join(ms(m) for m in medians)
                print(f"  {name:15} median {ms(best[name])}  p99 {ms(p99)}  (rounds: {spread})")
            echo_cpu = cpu_of(usages)
            print(
                "  CPU us per round trip: "
                + ", ".join(f"{side} {us:.0f}" for side, us in echo_cpu.items())
            )
            ratio = best["virtrio daemon"] / best["bare PTY"]
            print(f"  ratio daemon/bare median:         {ratio:.1f}x")
            rows.append(
                Row(
                    "pty.echo",
                    best["virtrio daemon"] * 1000,
                    "ms",
                    "bare PTY",
                    best["bare PTY"] * 1000,
                    cpu_us={"virtrio": echo_cpu},
                    runs=Spread.of(statistics.median(t) * 1000 for t in rounds["virtrio daemon"]),
                    anchor_runs=Spread.of(statistics.median(t) * 1000 for t in rounds["bare PTY"]),
                    note=f"median of {args.round_trips}, best of {args.runs} interleaved rounds",
                )
            )
        finally:
            daemon.terminate()
            await daemon.wait()
    write_results("pty", rows)


if __name__ == "__main__":
    trio.run(main)
