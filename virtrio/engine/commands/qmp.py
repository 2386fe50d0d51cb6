"""``virtrio qmp ADDRESS COMMAND [JSON-ARGS]``: run one QMP command and print its result."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio qmp``."""
    parser = sub.add_parser(
        "qmp",
        help="run a QMP command",
        description="Run one QMP command and print its return value as JSON.",
        epilog="example: virtrio qmp unix:/tmp/vm/qmp.sock send-key "
        '\'{"keys": [{"type": "qcode", "data": "esc"}]}\'',
    )
    parser.add_argument("address", help="QMP socket: unix:/path or tcp://host:port")
    parser.add_argument("command", help="QMP command, e.g. query-status")
    parser.add_argument("arguments", nargs="?", help="arguments as a JSON object")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    parser.set_defaults(run=run)


def parse_json_object(text: str | None, what: str) -> dict[str, object] | None:
    """Parse a JSON-object argument or raise ConfigError naming it."""
    from virtrio.errors import ConfigError

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, got {text!r}")
    return value


async def run(args: argparse.Namespace) -> int:
    """Connect, run the command, print the result."""
    from virtrio.channels.qmp import open_qmp

    arguments = parse_json_object(args.arguments, "JSON-ARGS")
    async with open_qmp(args.address, connect_timeout=args.timeout) as qmp:
        result = await qmp.execute(args.command, arguments, timeout=args.timeout)
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0
