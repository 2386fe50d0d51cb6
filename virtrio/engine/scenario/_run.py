"""The executor: a scenario on every selected VM, one task per VM under a CapacityLimiter.

::

    async with open_engine(default_fleet(vms=2)) as engine:
        report = await run_scenario(engine, load_scenario("smoke.yaml"), parallel=2)
        print(report.passed, report.results_dir)

Each VM first waits for its channels (recorded as the step ``connect``), then runs the steps in
order, each under its own deadline (``timeout:``, else the scenario's). A failed step ends that
VM's run; with ``fail_fast`` it also cancels every other VM's. ``repeat`` runs the scenario that
many times on each VM (for the duration percentiles of a benchmark).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from virtrio.errors import ConfigError, VirtrioError

from ._context import EXCERPT, ScenarioContext, StepRecord, expand
from ._model import PythonScenario, Scenario, Step
from ._registry import StepRegistry, default_steps

__all__ = ["RunReport", "VmResult", "run_scenario"]


@attrs.define
class VmResult:
    """One VM's run: its records in order, and how it ended."""

    vm: str
    records: list[StepRecord] = attrs.field(factory=list)
    #: ``pending``, ``running``, ``passed``, ``failed`` or ``cancelled``.
    status: str = "pending"
    started: float | None = None
    duration: float = 0.0
    #: The step running now (for progress).
    current: str = ""

    @property
    def failure(self) -> StepRecord | None:
        """The first failed step, if any."""
        return next((r for r in self.records if r.status == "failed"), None)


@attrs.define
class RunReport:
    """Everything a run produced; :func:`~._results.write_results` puts it on disk."""

    scenario: str
    source: str
    vms: dict[str, VmResult]
    repeat: int
    parallel: int
    fail_fast: bool
    duration: float = 0.0
    results_dir: Path | None = None
    #: Line channels' full output and QMP events, by VM then artefact name.
    channel_output: dict[str, dict[str, bytes]] = attrs.field(factory=dict)

    @property
    def passed(self) -> bool:
        """Every VM passed."""
        return bool(self.vms) and all(v.status == "passed" for v in self.vms.values())


def _select(engine: Any, vms: Sequence[str] | None, tag: str | None) -> list[Any]:
    if vms:
        return [engine.vm(v) for v in vms]
    selected = engine.vms(tag=tag)
    if not selected:
        raise ConfigError(f"no VM in the fleet{f' has the tag {tag!r}' if tag else ''}")
    return list(selected)


async def _connect(vm: Any, timeout: float) -> None:
    async with trio.open_nursery() as nursery:
        for name in vm.channel_kinds():
            handle = vm.channel(name)
            if hasattr(handle, "wait_connected"):
                nursery.start_soon(partial(handle.wait_connected, timeout=timeout))


async def _run_steps(scenario: Scenario, ctx: ScenarioContext) -> None:
    for step in scenario.steps:
        kind = ctx.registry.get(step.kind)
        assert kind is not None  # checked when parsed
        timeout = step.timeout if step.timeout is not None else scenario.timeout
        async with ctx.step(
            step.label, timeout=timeout, kind=step.kind, index=step.index
        ) as record:
            record.where = step.where
            ready = Step(
                step.kind,
                expand(step.value, ctx.vars),
                expand(dict(step.fields), ctx.vars),
                step.index,
                step.label,
                step.timeout,
                step.capture,
                step.where,
            )
            outcome = await kind.run(ready, ctx.vm, ctx)
            record.output = outcome.output[-EXCERPT:]
            record.status = outcome.status
            if step.capture is not None:
                _capture(ctx, step, outcome)


def _capture(ctx: ScenarioContext, step: Step, outcome: Any) -> None:
    import re

    assert step.capture is not None
    var, regex = step.capture
    if regex is None:
        value = outcome.value if outcome.value is not None else outcome.output.strip()
    else:
        found = re.search(regex, outcome.output)
        if found is None:
            raise ConfigError(f"set: {var}: {regex!r} not found in {outcome.output[-200:]!r}")
        value = found.group(1) if found.groups() else found.group(0)
    ctx.vars[var] = value


async def run_scenario(
    engine: Any,
    scenario: Scenario | PythonScenario,
    *,
    vms: Sequence[str] | None = None,
    tag: str | None = None,
    parallel: int | None = None,
    fail_fast: bool = False,
    repeat: int = 1,
    connect_timeout: float = 120.0,
    registry: StepRegistry | None = None,
    artefacts: Path | None = None,
    on_update: Callable[[VmResult], None] | None = None,
) -> RunReport:
    """Run ``scenario`` on the selected VMs (``vms`` by id, else those with ``tag``, else all).

    Args:
        parallel: VMs running at once (default: all).
        fail_fast: a VM's failure cancels the others (default: each runs to its end).
        repeat: runs per VM.
        connect_timeout: how long a VM's channels may take to connect (a booting guest).
        artefacts: where steps put files (screenshots, fetched files), in a folder per VM.
        on_update: called with a VM's result whenever one of its steps starts or ends.

    Raises:
        ConfigError: no VM selected, or ``parallel``/``repeat`` below 1.
    """
    selected = _select(engine, vms, tag)
    width = len(selected) if parallel is None else parallel
    if width < 1 or repeat < 1:
        raise ConfigError("--parallel and --repeat must be at least 1")
    steps = registry if registry is not None else default_steps()
    limiter = trio.CapacityLimiter(width)
    folder = artefacts if artefacts is not None else Path(".")
    source = Path(scenario.source)
    base = source.parent if source.suffix in (".yaml", ".yml", ".py") else Path(".")
    report = RunReport(
        scenario.name,
        scenario.source,
        {vm.name: VmResult(vm.name) for vm in selected},
        repeat,
        width,
        fail_fast,
    )
    start = time.perf_counter()

    def notify(result: VmResult) -> Callable[[StepRecord], None]:
        def on_step(record: StepRecord) -> None:
            result.current = record.step if record.status == "running" else result.current
            if on_update is not None:
                on_update(result)

        return on_step

    async def one_vm(vm: Any, cancel_all: trio.CancelScope) -> None:
        result = report.vms[vm.name]
        async with limiter:
            result.status, result.started = "running", time.perf_counter()
            on_step = notify(result)
            failed = False
            try:
                boot = ScenarioContext(
                    engine, vm, registry=steps, artefacts=folder / vm.name, on_step=on_step
                )
                boot.records = result.records
                try:
                    async with boot.step(
                        "connect", timeout=connect_timeout, kind="connect", index=-1
                    ):
                        await _connect(vm, connect_timeout)
                    for iteration in range(1, repeat + 1):
                        ctx = ScenarioContext(
                            engine,
                            vm,
                            registry=steps,
                            artefacts=folder / vm.name,
                            iteration=iteration,
                            variables=getattr(scenario, "vars", None),
                            default_timeout=scenario.timeout,
                            on_step=on_step,
                            base=base,
                        )
                        ctx.records = result.records
                        if isinstance(scenario, Scenario):
                            await _run_steps(scenario, ctx)
                        else:
                            await _run_python(scenario, vm, ctx)
                except Exception:
                    failed = True  # recorded by the step that raised (a step's bug too)
                result.status = "failed" if failed else "passed"
            finally:
                if result.status == "running":
                    result.status = "cancelled"
                    for record in result.records:
                        if record.status == "running":
                            record.status = "cancelled"
                result.duration = time.perf_counter() - (result.started or start)
                result.current = ""
                if on_update is not None:
                    on_update(result)
            if failed and fail_fast:
                cancel_all.cancel()

    async with trio.open_nursery() as nursery:
        for vm in selected:
            nursery.start_soon(one_vm, vm, nursery.cancel_scope)
    for result in report.vms.values():
        if result.status == "pending":
            result.status = "cancelled"
    report.duration = time.perf_counter() - start
    report.channel_output = _collect_output(engine, selected)
    return report


async def _run_python(scenario: PythonScenario, vm: Any, ctx: ScenarioContext) -> None:
    try:
        await scenario.function(vm, ctx)
    except Exception as exc:
        if not any(r.status == "failed" for r in ctx.records):
            # raised outside any ctx.step: record it as a step of its own
            async with ctx.step("scenario", timeout=math.inf) as record:
                record.output = ""
                raise exc
        raise


def _collect_output(engine: Any, selected: list[Any]) -> dict[str, dict[str, bytes]]:
    import json

    out: dict[str, dict[str, bytes]] = {}
    try:
        events = engine.events_since(0)
    except VirtrioError:
        events = []
    for vm in selected:
        files: dict[str, bytes] = {}
        for name, kind in vm.channel_kinds().items():
            if kind in ("serial-console", "virtio-serial"):
                try:
                    files[f"{name}.log"] = vm.line(name).output()
                except VirtrioError as exc:
                    files[f"{name}.log"] = f"(output lost: {exc})\n".encode()
        lines = [
            json.dumps({"seq": e.seq, "kind": e.kind, "name": e.name, "channel": e.channel,
                        "data": dict(e.data), "time": e.time}, default=str)
            for e in events
            if e.vm == vm.name
        ]  # fmt: skip
        files["events.jsonl"] = ("\n".join(lines) + "\n").encode() if lines else b""
        out[vm.name] = files
    return out
