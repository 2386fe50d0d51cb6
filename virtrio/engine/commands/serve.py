"""``virtrio serve``: the emulation-session server; ``virtrio serve keys create --role admin``
bootstraps an API key."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "virtrio" / "server"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio serve`` and ``virtrio serve keys create``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", help="sqlite:PATH (default: virtrio.db in the data dir) or postgresql://..."
    )
    common.add_argument(
        "--data-dir", type=Path, default=_default_data_dir(), help="sessions, artefacts, the db"
    )
    parser = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the emulation-session REST/WebSocket API",
        description="Serve the emulation-session API (docs at /api/v1/docs). SIGINT or SIGTERM "
        "stops every running session cleanly, then the server.",
    )
    parser.add_argument(
        "--listen",
        default="tcp://127.0.0.1:8080",
        help="tcp://127.0.0.1:PORT or unix:/path (default tcp://127.0.0.1:8080)",
    )
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s per key (default 50)")
    parser.add_argument("--burst", type=int, default=100, help="burst per key (default 100)")
    parser.add_argument(
        "--lease", type=float, default=15.0, help="seconds a server's lease lasts (default 15)"
    )
    parser.add_argument(
        "--max-sessions-per-key",
        type=int,
        default=16,
        help="live sessions one key may have on this server (0: no limit; default 16)",
    )
    for flag, kind, what in (
        ("--max-memory-mb", int, "memory (MiB, the emulator's own included)"),
        ("--max-cpus", float, "CPU share (cores)"),
        ("--max-cpu-time-s", float, "CPU seconds per emulator run"),
        ("--max-timeout-s", float, "session life (seconds)"),
    ):
        parser.add_argument(
            flag,
            type=kind,
            default=None,
            help=f"cap on a session's {what}: larger requests get 422, and a session that asks "
            "for none gets the cap (default: no cap)",
        )
    parser.add_argument(
        "--console-history-kb",
        type=int,
        default=1024,
        help="console output each session keeps in memory and sends a viewer on connect "
        "(KiB; the session's console.log has all of it; default 1024)",
    )
    parser.add_argument("--server-id", help="this server's name in the store (default: hostname)")
    parser.set_defaults(run=run)
    keys = parser.add_subparsers(dest="serve_command", metavar="keys")
    keys_parser = keys.add_parser("keys", help="manage API keys")
    actions = keys_parser.add_subparsers(dest="keys_command", metavar="create", required=True)
    create = actions.add_parser("create", parents=[common], help="create an API key")
    create.add_argument("--role", choices=["admin", "developer", "viewer"], required=True)
    create.add_argument("--name", default="", help="a label for the key")
    create.set_defaults(run=create_key)


async def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    import signal

    import trio

    from virtrio.engine.server import ResourceCaps, serve

    caps = ResourceCaps(
        memory_mb=args.max_memory_mb,
        cpus=args.max_cpus,
        cpu_time_s=args.max_cpu_time_s,
        timeout_s=args.max_timeout_s,
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:

        async def watch_signals() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    stop.set()
                    return

        nursery.start_soon(watch_signals)
        url, _state = await nursery.start(
            lambda task_status: serve(
                args.data_dir,
                listen=args.listen,
                db=args.db,
                shutdown=stop,
                rate=args.rate,
                burst=args.burst,
                server_id=args.server_id,
                lease=args.lease,
                max_sessions_per_key=args.max_sessions_per_key,
                caps=caps,
                console_history=args.console_history_kb << 10,
                task_status=task_status,
            )
        )
        print(f"virtrio serve: listening on {url} (data dir {args.data_dir})", flush=True)
        await stop.wait()
        await trio.lowlevel.checkpoint()
    return 0


async def create_key(args: argparse.Namespace) -> int:
    """Create a key in the store and print it (it is shown only this once)."""
    from virtrio.engine.server import Role, open_server

    async with open_server(args.data_dir, db=args.db) as (state, _app):
        record, key = await state.auth.create_key(Role(args.role), args.name)
    print(key)
    print(
        f"virtrio serve: created {record.role} key {record.id}; it is not shown again",
        file=sys.stderr,
    )
    return 0
