"""``virtrio spice ADDRESS screenshot|keys|type``: drive a VM's Spice display and keyboard."""

from __future__ import annotations

import argparse
import os

PASSWORD_ENV = "VIRTRIO_SPICE_PASSWORD"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio spice``."""
    parser = sub.add_parser(
        "spice",
        help="screenshots and keys through a VM's Spice server",
        description=(
            "Connect to a Spice server (unix:PATH, tcp://H:P, tls://H:P, ws://H:P/) and take a "
            "screenshot or send keys. The password comes from --password, --password-file or "
            f"${PASSWORD_ENV}."
        ),
        epilog="example: virtrio spice unix:/tmp/vm/spice.sock keys ctrl-alt-delete",
    )
    parser.add_argument("address", help="the Spice server address")
    parser.add_argument(
        "--password", help="the password (visible to other users in ps; prefer the others)"
    )
    parser.add_argument(
        "--password-file", help=f"read the password from this file (default: ${PASSWORD_ENV})"
    )
    parser.add_argument("--ca", help="CA file to verify a tls:// server with")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    actions = parser.add_subparsers(dest="action", required=True)
    shot = actions.add_parser("screenshot", help="save the screen as PNG")
    shot.add_argument("-o", "--output", required=True, help="PNG file to write")
    shot.set_defaults(run=_screenshot)
    keys = actions.add_parser("keys", help="press key combinations, e.g. ctrl-alt-delete esc")
    keys.add_argument("combos", nargs="+")
    keys.set_defaults(run=_keys)
    type_ = actions.add_parser("type", help="type text (US layout)")
    type_.add_argument("text")
    type_.set_defaults(run=_type)


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return str(args.password)
    if args.password_file:
        with open(args.password_file, encoding="utf-8") as f:
            return f.read().rstrip("\n")
    return os.environ.get(PASSWORD_ENV, "")


def _session(args: argparse.Namespace, channels: set[str]):  # type: ignore[no-untyped-def]
    from virtrio.channels.spice import SpiceTransport, open_spice_session

    ctx = SpiceTransport.tls_context(args.ca) if args.ca else None
    return open_spice_session(
        args.address,
        password=_password(args),
        channels=channels,
        ssl_context=ctx,
        connect_timeout=args.timeout,
        call_timeout=args.timeout,
    )


async def _screenshot(args: argparse.Namespace) -> int:
    async with _session(args, {"display"}) as spice:
        png = await spice.screenshot(timeout=args.timeout)
    import trio

    await trio.Path(args.output).write_bytes(png)
    print(f"wrote {args.output} ({len(png)} bytes)")
    return 0


async def _keys(args: argparse.Namespace) -> int:
    from virtrio.channels.spice import combo_codes

    for combo in args.combos:
        combo_codes(combo)  # a typo fails before anything is pressed
    async with _session(args, {"inputs"}) as spice:
        for combo in args.combos:
            await spice.send_keys(combo)
    return 0


async def _type(args: argparse.Namespace) -> int:
    from virtrio.channels.spice import text_strokes

    text_strokes(args.text)
    async with _session(args, {"inputs"}) as spice:
        await spice.type_text(args.text)
    return 0
