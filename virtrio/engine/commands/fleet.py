"""``virtrio fleet check|schema|up|status``: a fleet from YAML (or the embedded default)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from virtrio.engine import Engine, Fleet


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio fleet``."""
    parser = sub.add_parser("fleet", help="check, describe and run a fleet of VMs")
    actions = parser.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate a fleet file (every problem at once)")
    check.add_argument("file")
    check.set_defaults(run=_check)
    schema = actions.add_parser("schema", help="print the JSON Schema of fleet files")
    schema.set_defaults(run=_schema)
    for name, help_text, run in (
        ("up", "bring the fleet up and show it live until Ctrl-C", _up),
        ("status", "bring the fleet up, show its state once, shut it down", _status),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("file", nargs="?", help="fleet file (default: N demo guests)")
        action.add_argument("--vms", type=int, default=2, help="demo guests without a file")
        action.add_argument(
            "--wait", type=float, default=120.0, help="seconds to wait for every channel"
        )
        action.set_defaults(run=run)


def _fleet(args: argparse.Namespace) -> Fleet:
    from virtrio.engine.config import default_fleet, load_fleet

    return load_fleet(args.file) if args.file else default_fleet(vms=args.vms)


async def _check(args: argparse.Namespace) -> int:
    from virtrio.engine.config import FleetError, load_fleet

    try:
        fleet = load_fleet(args.file)
    except FleetError as exc:
        for issue in exc.issues:
            print(issue)
        print(f"{len(exc.issues)} problem(s)")
        return 1
    channels = sum(len(vm.channels) for vm in fleet.vms)
    print(f"{args.file}: ok: {len(fleet.hosts)} hosts, {len(fleet.vms)} VMs, {channels} channels")
    return 0


async def _schema(args: argparse.Namespace) -> int:
    from virtrio.engine.config import fleet_schema

    print(json.dumps(fleet_schema(), indent=2))
    return 0


def table(engine: Engine) -> Any:
    """A rich table of every VM and channel state."""
    from rich.table import Table

    stats = engine.statistics()
    title = ", ".join(f"{n} {state}" for state, n in sorted(stats.vms.items())) or "no VMs"
    grid = Table(title=f"virtrio fleet: {title}; {stats.reconnects} reconnects")
    grid.add_column("VM")
    grid.add_column("tags")
    grid.add_column("channels")
    colours = {"connected": "green", "failed": "red", "closed": "dim"}
    for config in engine.fleet.vms:
        try:
            vm = engine.vm(config.id)
        except Exception:
            grid.add_row(config.id, ",".join(config.tags), "[dim]stopped[/]")
            continue
        kinds = vm.channel_kinds()
        cells = []
        for name, state in vm.channel_states().items():
            colour = colours.get(state.value, "yellow")
            cells.append(f"{name} ({kinds[name]}): [{colour}]{state.value}[/]")
        grid.add_row(config.id, ",".join(config.tags), "\n".join(cells))
    return grid


async def _up(args: argparse.Namespace) -> int:
    import signal

    import trio
    from rich.console import Console
    from rich.live import Live

    from virtrio.engine import open_engine

    fleet = _fleet(args)
    console = Console()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_engine(fleet) as engine:
            with Live(table(engine), console=console, refresh_per_second=4) as live:
                async with trio.open_nursery() as nursery:

                    async def redraw() -> None:
                        with engine.events(kinds=("state",)) as changes:
                            async for _ in changes:
                                live.update(table(engine))

                    nursery.start_soon(redraw)
                    async for signum in signals:
                        console.print(f"{signal.Signals(signum).name}: shutting the fleet down")
                        break
                    nursery.cancel_scope.cancel()
    console.print("fleet stopped")
    return 0


async def _status(args: argparse.Namespace) -> int:
    from rich.console import Console

    from virtrio.engine import open_engine
    from virtrio.errors import VirtrioTimeoutError

    console = Console()
    async with open_engine(_fleet(args)) as engine:
        status = 0
        try:
            await engine.wait_connected(timeout=args.wait)
        except VirtrioTimeoutError as exc:
            console.print(str(exc))
            status = 1
        console.print(table(engine))
    return status
