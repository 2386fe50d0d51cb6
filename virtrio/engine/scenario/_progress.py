"""What ``virtrio run`` shows: a live line per VM on a terminal, then a summary table."""

from __future__ import annotations

import time
from typing import Any

from ._results import step_statistics
from ._run import RunReport, VmResult

__all__ = ["Progress", "summary"]


class Progress:
    """A rich live table (one row per VM: status, step, elapsed), redrawn as steps move and
    4 times a second (rebuilt each time, so a long step's elapsed time keeps counting)."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self._vms: dict[str, VmResult] = {}
        self._live = Live(
            console=console, refresh_per_second=4, transient=False, get_renderable=self._table
        )

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for column in ("VM", "status", "step", "elapsed"):
            table.add_column(column)
        now = time.perf_counter()
        for vm in list(self._vms.values()):  # a copy: rich redraws from its own thread
            running = vm.status == "running" and vm.started is not None
            elapsed = now - vm.started if running and vm.started else vm.duration
            colour = {"passed": "green", "failed": "red", "running": "yellow"}.get(vm.status, "")
            done = len([r for r in vm.records if r.status != "running"])
            table.add_row(
                vm.vm,
                f"[{colour}]{vm.status}[/]" if colour else vm.status,
                vm.current or f"{done} steps",
                f"{elapsed:6.1f}s",
            )
        return table

    def update(self, vm: VmResult) -> None:
        """A VM's step started or ended."""
        self._vms[vm.vm] = vm
        self._live.refresh()

    def __enter__(self) -> Progress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.refresh()
        self._live.__exit__(None, None, None)


def summary(report: RunReport, console: Any) -> None:
    """Print the per-VM outcome and, with repeats or several VMs, the step percentiles."""
    from rich.table import Table

    table = Table(title=f"scenario {report.scenario}", header_style="bold")
    for column in ("VM", "result", "steps", "duration", "failure"):
        table.add_column(column)
    for vm in report.vms.values():
        failure = vm.failure
        table.add_row(
            vm.vm,
            "[green]passed[/]" if vm.status == "passed" else f"[red]{vm.status}[/]",
            str(len(vm.records)),
            f"{vm.duration:.2f}s",
            f"{failure.step}: {failure.error_class}: {failure.error}"[:120] if failure else "",
        )
    console.print(table)
    stats = step_statistics(report.vms.values())
    if stats and (report.repeat > 1 or len(report.vms) > 1):
        timing = Table(title="step durations (ms)", header_style="bold")
        for column in ("step", "n", "p50", "p95", "p99", "max"):
            timing.add_column(column, justify="right" if column != "step" else "left")
        for row in stats:
            timing.add_row(
                row["step"],
                str(row["count"]),
                *(f"{row[k] * 1000:.1f}" for k in ("p50", "p95", "p99", "max")),
            )
        console.print(timing)
