"""``virtrio guest build|path``: the demo guest image."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio guest``."""
    parser = sub.add_parser("guest", help="build or locate the demo guest image")
    actions = parser.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="build it if its inputs changed (cached)")
    build.add_argument("--force", action="store_true", help="rebuild even if cached")
    build.set_defaults(run=_build)
    path = actions.add_parser("path", help="print the kernel and initrd paths")
    path.set_defaults(run=_path)


async def _build(args: argparse.Namespace) -> int:
    import trio

    from virtrio.engine._guest import build_guest

    await trio.to_thread.run_sync(lambda: build_guest(force=args.force, log=True))
    return 0


async def _path(args: argparse.Namespace) -> int:
    from virtrio.engine._guest import require_guest

    image = require_guest()
    print(image.kernel)
    print(image.initrd)
    return 0
