"""``virtrio run [SCENARIO] [--fleet FLEET.yaml]``: the main job.

With no arguments: boots 2 demo guests and runs the built-in demo scenario on both, with
live progress on a terminal (a line per VM and where the results are otherwise; only the JSON
with ``--json``). Exit status 0 only if every VM
passed.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``virtrio run``."""
    parser = sub.add_parser(
        "run", help="run a scenario on every selected VM of a fleet (default: the demo)"
    )
    parser.add_argument("scenario", nargs="?", help="a .yaml or .py scenario (default: demo)")
    parser.add_argument("--fleet", help="fleet file (default: --vms demo guests)")
    parser.add_argument("--vms", default="2", help="VM ids (a,b), or a count of demo guests")
    parser.add_argument("--tag", help="run on the VMs with this tag")
    parser.add_argument("--parallel", type=int, help="VMs running at once (default: all)")
    parser.add_argument("--fail-fast", action="store_true", help="a failure cancels the others")
    parser.add_argument("--repeat", type=int, default=1, help="runs per VM (for percentiles)")
    parser.add_argument("--results", help="results folder (default: ./virtrio-results/TIME)")
    parser.add_argument("--json", action="store_true", help="print results.json on stdout")
    parser.add_argument(
        "--connect-timeout", type=float, default=180.0, help="seconds a VM may take to boot"
    )
    parser.add_argument(
        "--spice", action="store_true", help="demo guests with a Spice display (screenshots)"
    )
    parser.add_argument("--check", action="store_true", help="validate the scenario and stop")
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    """Validate, bring the fleet up, run, write the results."""
    from pathlib import Path

    from rich.console import Console

    from virtrio.engine import default_fleet, load_fleet, open_engine
    from virtrio.engine.scenario import demo_scenario, load_scenario, run_scenario, write_results
    from virtrio.engine.scenario._progress import Progress, summary
    from virtrio.engine.scenario._results import default_results_dir, report_json
    from virtrio.errors import ConfigError

    scenario = load_scenario(args.scenario) if args.scenario else demo_scenario()
    if args.check:
        print(f"{scenario.source}: ok: scenario {scenario.name}")
        return 0
    ids: list[str] | None = None
    if args.fleet:
        fleet = load_fleet(args.fleet)
        ids = args.vms.split(",") if not args.vms.isdigit() else None
    elif args.vms.isdigit():
        fleet = default_fleet(vms=int(args.vms), spice=args.spice)
    else:
        raise ConfigError("--vms takes a count of demo guests without --fleet")
    folder = Path(args.results) if args.results else default_results_dir()
    tty = sys.stdout.isatty() and not args.json
    console = Console(highlight=False) if tty else None
    say = console.print if console is not None else (lambda *a, **k: None)
    say(f"virtrio run: scenario {scenario.name} ({scenario.source}) on fleet {fleet.source}")
    async with open_engine(fleet) as engine:
        kwargs = {
            "vms": ids,
            "tag": args.tag,
            "parallel": args.parallel,
            "fail_fast": args.fail_fast,
            "repeat": args.repeat,
            "connect_timeout": args.connect_timeout,
            "artefacts": folder / "artefacts",
        }
        if console is not None:
            with Progress(console) as progress:
                report = await run_scenario(engine, scenario, on_update=progress.update, **kwargs)
        else:
            report = await run_scenario(engine, scenario, **kwargs)
    write_results(report, folder)
    if console is not None:
        summary(report, console)
        say(f"results: {folder}  (results.json, junit.xml, artefacts/)")
    elif args.json:
        print(json.dumps(report_json(report), indent=2))
    else:  # no terminal: no live table, a line per VM and where the results are
        for vm in report.vms.values():
            failure = vm.failure
            why = f": {failure.step}: {failure.error_class}: {failure.error}" if failure else ""
            print(f"{vm.vm} {vm.status} ({len(vm.records)} steps, {vm.duration:.2f}s){why}")
        print(f"results: {folder}")
    return 0 if report.passed else 1
