"""``virtrio pty-daemon`` (serve terminal sessions) and ``virtrio pty create|list|attach|kill|
signal`` (use them)."""

from __future__ import annotations

import argparse
from typing import Any

_DAEMON_OPTIONS = (
    ("--max-connections", "max_connections", "RUST_PTY_MAX_CONNECTIONS", 100),
    ("--max-sessions", "max_sessions", "RUST_PTY_MAX_SESSIONS", 100),
    ("--scrollback-lines", "scrollback_lines", "RUST_PTY_SCROLLBACK_LINES", 1000),
    ("--flow-threshold", "flow_threshold", "RUST_PTY_FLOW_THRESHOLD", 4096),
    ("--max-queue-size", "max_queue_size", "RUST_PTY_FLOW_MAX_QUEUE_SIZE", 16384),
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio pty-daemon`` and ``virtrio pty``."""
    daemon = sub.add_parser(
        "pty-daemon",
        help="serve terminal sessions on a Unix socket (seed 003's daemon)",
        description="Serve terminal sessions. Every option defaults to its environment "
        "variable, then to the seed's default.",
    )
    daemon.add_argument(
        "--socket",
        dest="socket_path",
        help="socket path (RUST_PTY_SOCKET_PATH; default ~/.vibest/pty/socket)",
    )
    for flag, dest, env, default in _DAEMON_OPTIONS:
        daemon.add_argument(flag, dest=dest, type=int, help=f"{env}; default {default}")
    daemon.add_argument(
        "--auto-disconnect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="disconnect a client whose queue is full (RUST_PTY_FLOW_AUTO_DISCONNECT; "
        "default false)",
    )
    daemon.set_defaults(run=_serve)

    pty = sub.add_parser("pty", help="create, list, attach to and kill terminal sessions")
    pty.add_argument("--socket", help="the daemon's socket (default as pty-daemon)")
    actions = pty.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="start a session and print its id")
    create.add_argument("--cols", type=int, default=80)
    create.add_argument("--rows", type=int, default=24)
    create.add_argument("--cwd")
    create.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    create.add_argument(
        "--console",
        metavar="ADDRESS",
        help="a VM serial console: a socket address, or libvirt:URI#DOMAIN[/DEVICE]",
    )
    create.add_argument("command", nargs=argparse.REMAINDER, help="program and arguments")
    create.set_defaults(run=_create)

    listing = actions.add_parser("list", help="list the sessions")
    listing.set_defaults(run=_list)

    attach = actions.add_parser("attach", help="attach this terminal to a session (raw mode)")
    attach.add_argument("session", type=int)
    attach.add_argument(
        "--detach-key", default="^\\", help="detach with this key (default ^\\, Ctrl-\\)"
    )
    attach.set_defaults(run=_attach)

    kill = actions.add_parser("kill", help="end a session")
    kill.add_argument("session", type=int)
    kill.set_defaults(run=_kill)

    signal = actions.add_parser("signal", help="send a signal to a session's foreground job")
    signal.add_argument("session", type=int)
    signal.add_argument("signal", help="number or name (INT, SIGTERM, ...)")
    signal.set_defaults(run=_signal)


async def _serve(args: argparse.Namespace) -> int:
    import signal

    import trio

    from virtrio.engine.pty import PtyDaemonConfig, serve_pty_daemon

    overrides: dict[str, Any] = {dest: getattr(args, dest) for _f, dest, _e, _d in _DAEMON_OPTIONS}
    overrides["socket_path"] = args.socket_path
    overrides["auto_disconnect"] = args.auto_disconnect
    config = PtyDaemonConfig.from_env(**overrides)
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(serve_pty_daemon, config)
            print(f"virtrio pty-daemon: listening on {config.socket_path}", flush=True)
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()  # sessions are killed and reaped, the socket removed
    return 0


async def _create(args: argparse.Namespace) -> int:
    from virtrio.channels.pty import open_pty_client
    from virtrio.errors import ConfigError

    env = {}
    for item in args.env:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    async with open_pty_client(args.socket) as client:
        session = await client.create(
            command=command[0] if command else None,
            args=command[1:],
            env=env,
            cwd=args.cwd,
            cols=args.cols,
            rows=args.rows,
            console=args.console,
        )
    print(session)
    return 0


async def _list(args: argparse.Namespace) -> int:
    import time

    from virtrio.channels.pty import open_pty_client

    async with open_pty_client(args.socket) as client:
        sessions = await client.list()
    print(f"{'ID':>4}  {'KIND':7}  {'PID':>7}  {'SIZE':>7}  {'ATTACHED':>8}  {'AGE':>8}  COMMAND")
    now = time.time()
    for s in sessions:
        print(
            f"{s.session:>4}  {s.kind:7}  {s.pid or '-':>7}  {f'{s.cols}x{s.rows}':>7}  "
            f"{s.attached:>8}  {now - s.created:>7.0f}s  {s.command}"
        )
    return 0


async def _attach(args: argparse.Namespace) -> int:
    import sys

    from virtrio.channels.pty import open_pty_client
    from virtrio.engine.pty._attach import attach_terminal, parse_key
    from virtrio.errors import ConfigError

    try:
        key = parse_key(args.detach_key)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    async with open_pty_client(args.socket) as client:
        detached, status = await attach_terminal(client, args.session, detach_key=key)
    what = "detached from" if detached else f"exit status {status} of"
    print(f"\r\n[virtrio: {what} session {args.session}]", file=sys.stderr)
    return status


async def _kill(args: argparse.Namespace) -> int:
    from virtrio.channels.pty import open_pty_client

    async with open_pty_client(args.socket) as client:
        await client.kill(args.session)
    return 0


async def _signal(args: argparse.Namespace) -> int:
    from virtrio.channels.pty import open_pty_client

    value: int | str = int(args.signal) if args.signal.isdigit() else args.signal
    async with open_pty_client(args.socket) as client:
        await client.signal(args.session, value)
    return 0
