"""The ``virtrio`` command line: one entry point, a subcommand per face."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import trio

from virtrio.errors import VirtrioError

from . import commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every subcommand module in :mod:`.commands` registered."""
    parser = argparse.ArgumentParser(
        prog="virtrio", description="Drive virtual machines: QMP, guest agent, libvirt, Spice."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO)
    try:
        status: int = trio.run(args.run, args)
    except KeyboardInterrupt:
        return 130
    except VirtrioError as exc:
        print(f"virtrio: error: {exc}", file=sys.stderr)
        return 1
    return status
