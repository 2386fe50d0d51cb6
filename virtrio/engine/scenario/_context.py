"""What a scenario sees while it runs on one VM: variables, marks, artefacts, step records."""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from virtrio.errors import ConfigError, VirtrioError, VirtrioTimeoutError

from ._registry import StepOutcome, StepRegistry

__all__ = ["ScenarioContext", "StepFailed", "StepRecord", "expand"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: Output kept in a step's record (the artefacts keep everything).
EXCERPT = 2000
#: Seconds past a step's deadline before the step itself is cancelled (see ScenarioContext.step).
STEP_GRACE = 0.5


class StepFailed(VirtrioError):
    """A step's check did not hold (an exit status, an assertion, an expected exit)."""


@attrs.define
class StepRecord:
    """One step's result on one VM in one repeat."""

    vm: str
    iteration: int
    #: The step's position in the scenario (from 0; -1 for ``connect``, the wait for the
    #: VM's channels before the first step).
    index: int
    step: str
    kind: str
    status: str = "running"
    #: Seconds.
    duration: float = 0.0
    output: str = ""
    error_class: str | None = None
    error: str | None = None
    where: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as results.json has it."""
        out: dict[str, Any] = {
            "vm": self.vm,
            "iteration": self.iteration,
            "index": self.index,
            "step": self.step,
            "kind": self.kind,
            "status": self.status,
            "duration": round(self.duration, 6),
            "output": self.output,
        }
        if self.error is not None:
            out["error"] = {"class": self.error_class, "message": self.error}
        if self.where:
            out["where"] = self.where
        return out


def expand(value: Any, variables: Mapping[str, Any]) -> Any:
    """``${var}`` replaced in every string of ``value`` (a whole-string reference keeps the
    variable's type).

    Raises:
        ConfigError: a variable is not set.
    """
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole is not None:
            return _lookup(whole.group(1), variables)
        return _VAR.sub(lambda m: str(_lookup(m.group(1), variables)), value)
    if isinstance(value, Mapping):
        return {k: expand(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [expand(v, variables) for v in value]
    return value


def _lookup(name: str, variables: Mapping[str, Any]) -> Any:
    try:
        return variables[name]
    except KeyError:
        raise ConfigError(f"${{{name}}} is not set") from None


class ScenarioContext:
    """The ``ctx`` of ``async def scenario(vm, ctx)`` and of every step kind's ``run``."""

    def __init__(
        self,
        engine: Any,
        vm: Any,
        *,
        registry: StepRegistry,
        artefacts: Path,
        iteration: int = 1,
        variables: Mapping[str, Any] | None = None,
        default_timeout: float = 60.0,
        on_step: Callable[[StepRecord], None] | None = None,
        base: Path | None = None,
    ) -> None:
        self.engine = engine
        self.vm = vm
        self.registry = registry
        #: This VM's artefact folder (screenshots, files fetched, channel output).
        self.artefacts = artefacts
        self.iteration = iteration
        #: Variables: ``vars:``, what ``set:`` captured, ``vm`` and ``iteration``.
        self.vars: dict[str, Any] = {**(variables or {}), "vm": vm.name, "iteration": iteration}
        self.default_timeout = default_timeout
        #: The scenario file's folder: relative paths in steps (a reference PNG) start there.
        self.base = base if base is not None else Path(".")
        self.records: list[StepRecord] = []
        self._on_step = on_step
        # where the next expect/wait_event looks from: the marks taken before the previous
        # step began (so output the previous step caused is seen), moved past each match
        self._marks: dict[str, Any] = {}
        self._previous_marks: dict[str, Any] = {}
        self._event_seq = 0
        self._previous_seq = 0
        self._deadline = math.inf

    def path(self, name: str) -> Path:
        """A file a step names: absolute, or relative to the scenario's folder."""
        return self.base / name

    def remaining(self) -> float:
        """Seconds left before the current step's deadline: a wait inside a step that uses it
        fails with its own message (what it waited for, the output's tail) rather than the
        step's generic one."""
        return max(0.0, self._deadline - trio.current_time())

    # -- marks ------------------------------------------------------------------------------

    def _take_marks(self) -> None:
        self._previous_marks, self._previous_seq = dict(self._marks), self._event_seq
        self._marks = {}
        for name, kind in self.vm.channel_kinds().items():
            if kind in ("serial-console", "virtio-serial"):
                self._marks[name] = self.vm.line(name).mark()
        self._event_seq = self.engine.mark() if self.engine is not None else 0

    def mark_for(self, channel: str) -> Any:
        """Where an ``expect`` on ``channel`` looks from now: the start of the previous step,
        or just past the last match on it, whichever is later."""
        return self._previous_marks.get(channel)

    def matched(self, channel: str, end: Any) -> None:
        """An ``expect`` matched on ``channel`` up to ``end`` (a mark): later ones look after."""
        self._previous_marks[channel] = end
        self._marks[channel] = max(self._marks.get(channel, end), end, key=lambda m: m.offset)

    def event_after(self) -> int:
        """The sequence number a ``wait_event`` looks after."""
        return self._previous_seq

    def event_matched(self, seq: int) -> None:
        """A ``wait_event`` matched event ``seq``."""
        self._previous_seq = seq
        self._event_seq = max(self._event_seq, seq)

    # -- steps ------------------------------------------------------------------------------

    def _record(self, index: int, label: str, kind: str, where: str = "") -> StepRecord:
        record = StepRecord(self.vm.name, self.iteration, index, label, kind, where=where)
        self.records.append(record)
        if self._on_step is not None:
            self._on_step(record)
        return record

    @asynccontextmanager
    async def step(
        self,
        name: str,
        *,
        timeout: float | None = None,
        kind: str = "python",
        index: int | None = None,
    ) -> AsyncIterator[StepRecord]:
        """Record a step of a Python scenario (its duration, and its error if it raises),
        under a deadline (default: the scenario's)."""
        if index is None:
            index = sum(r.iteration == self.iteration and r.index >= 0 for r in self.records)
        record = self._record(index, name, kind)
        self._take_marks()
        start = time.perf_counter()
        limit = self.default_timeout if timeout is None else timeout
        self._deadline = trio.current_time() + limit
        try:
            # a wait that uses remaining() ends at the deadline with its own message; the step
            # as a whole is cut a little later, or both would end in one tick and the outer
            # scope's generic error would win
            with trio.fail_after(limit + STEP_GRACE):
                yield record
        except trio.TooSlowError:
            self._finish(record, start, VirtrioTimeoutError(f"step took over {limit:g} s"))
            raise VirtrioTimeoutError(f"step {name!r} took over {limit:g} s") from None
        except BaseException as exc:
            self._finish(record, start, exc)
            raise
        self._finish(record, start, None)

    def _finish(self, record: StepRecord, start: float, error: BaseException | None) -> None:
        record.duration = time.perf_counter() - start
        if error is None:
            if record.status == "running":
                record.status = "passed"
        elif isinstance(error, trio.Cancelled):
            record.status = "cancelled"
        else:
            record.status = "failed"
            record.error_class = type(error).__name__
            record.error = str(error)
        if self._on_step is not None:
            self._on_step(record)

    async def run(
        self, kind: str, value: Any = None, *, name: str | None = None, **fields: Any
    ) -> StepOutcome:
        """Run one registered step kind from Python (``await ctx.run("shell", "uname -a")``),
        recorded like a YAML step."""
        from ._model import Step, _label

        step_kind = self.registry.get(kind)
        if step_kind is None:
            raise ConfigError(f"unknown step {kind!r} (known: {', '.join(self.registry.names())})")
        timeout = fields.pop("timeout", None)
        step = Step(kind, value, fields, len(self.records), name or _label(kind, value))
        async with self.step(step.label, timeout=timeout, kind=kind) as record:
            outcome = await step_kind.run(step, self.vm, self)
            record.output = outcome.output[-EXCERPT:]
            record.status = outcome.status
        return outcome
