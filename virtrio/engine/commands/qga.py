"""``virtrio qga ADDRESS ping|info|osinfo|exec -- CMD...``: talk to a guest agent."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio qga``."""
    parser = sub.add_parser(
        "qga",
        help="talk to a QEMU guest agent",
        description="Talk to a QEMU guest agent over its host socket.",
        epilog="example: virtrio qga unix:/tmp/vm/qga.sock exec -- uname -a",
    )
    parser.add_argument("address", help="the agent's socket: unix:/path or tcp://host:port")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("ping", help="check the agent answers").set_defaults(run=_ping)
    actions.add_parser("info", help="agent version and commands").set_defaults(run=_info)
    actions.add_parser("osinfo", help="the guest's OS").set_defaults(run=_osinfo)
    exec_ = actions.add_parser(
        "exec", help="run a command in the guest; its output and exit status become ours"
    )
    exec_.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    exec_.set_defaults(run=_exec)


async def _ping(args: argparse.Namespace) -> int:
    import trio

    from virtrio.channels.qga import open_qga

    async with open_qga(args.address, connect_timeout=args.timeout) as qga:
        start = trio.current_time()
        await qga.ping(timeout=args.timeout)
        elapsed_ms = (trio.current_time() - start) * 1000
        print(f"guest agent at {args.address} answered in {elapsed_ms:.2f} ms")
    return 0


async def _info(args: argparse.Namespace) -> int:
    from virtrio.channels.qga import open_qga

    async with open_qga(args.address, connect_timeout=args.timeout) as qga:
        info = await qga.info(timeout=args.timeout)
    print(f"qemu-ga {info.version}")
    print("enabled: " + " ".join(sorted(info.enabled)))
    if info.disabled:
        print("disabled: " + " ".join(sorted(info.disabled)))
    return 0


async def _osinfo(args: argparse.Namespace) -> int:
    from virtrio.channels.qga import open_qga

    async with open_qga(args.address, connect_timeout=args.timeout) as qga:
        json.dump(await qga.osinfo(timeout=args.timeout), sys.stdout, indent=2)
    print()
    return 0


async def _exec(args: argparse.Namespace) -> int:
    from virtrio.channels.qga import open_qga
    from virtrio.errors import ConfigError

    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise ConfigError("exec needs a command: virtrio qga ADDRESS exec -- CMD [ARGS...]")
    async with open_qga(args.address, connect_timeout=args.timeout) as qga:
        result = await qga.exec_and_wait(argv[0], argv[1:], timeout=args.timeout)
    sys.stdout.buffer.write(result.stdout)
    sys.stderr.buffer.write(result.stderr)
    if result.signal is not None:
        return 128 + result.signal
    return result.exit_code or 0
