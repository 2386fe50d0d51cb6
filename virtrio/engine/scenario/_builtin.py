"""The built-in step kinds (each a :class:`~._registry.StepKind`)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from virtrio.errors import ConfigError, ConnectionLostError, VirtrioTimeoutError

from ._context import ScenarioContext, StepFailed
from ._registry import StepKind, StepOutcome
from ._screen import Screenshot, WaitScreen

__all__ = ["BUILTIN_STEPS"]


def _text(data: Any) -> str:
    if isinstance(data, bytes | bytearray):
        return bytes(data).decode("utf-8", "replace")
    if isinstance(data, str):
        return data
    return json.dumps(data, default=str, sort_keys=True)


class Qmp(StepKind):
    """``qmp: query-status`` or ``qmp: {command: ..., arguments: {...}}``; output: the reply."""

    name = "qmp"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if isinstance(value, str):
            return []
        if isinstance(value, Mapping) and isinstance(value.get("command"), str):
            extra = set(value) - {"command", "arguments"}
            if extra:
                return [f"unknown field {sorted(extra)[0]!r} (known: arguments, command)"]
            if not isinstance(value.get("arguments", {}), Mapping):
                return ["arguments: a map"]
            return []
        return ["a command name, or {command: NAME, arguments: {...}}"]

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        command = step.value if isinstance(step.value, str) else step.value["command"]
        arguments = None if isinstance(step.value, str) else step.value.get("arguments")
        reply = await vm.qmp.execute(command, arguments)
        return StepOutcome(_text(reply), reply)


class _Input(StepKind):
    fields = frozenset({"via", "hold_time"})

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        problems = [] if isinstance(value, str) else ["a string"]
        if fields.get("via", "qmp") not in ("qmp", "spice"):
            problems.append("via: qmp or spice")
        if isinstance(value, str) and "${" not in value:
            from virtrio.channels.qmp import parse_combo, text_to_combos

            try:
                if self.name == "keys":
                    parse_combo(value)
                else:
                    text_to_combos(value)
            except ConfigError as exc:
                problems.append(str(exc))
        return problems


class Keys(_Input):
    """``keys: ctrl-alt-delete`` (``via: qmp|spice``)."""

    name = "keys"

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        if step.fields.get("via") == "spice":
            await vm.spice.send_keys(step.value)
        else:
            await vm.qmp.send_key(step.value, hold_time=float(step.fields.get("hold_time", 0.05)))
        return StepOutcome(step.value)


class Type(_Input):
    """``type: "text\\n"``: typed on the VM's keyboard (US layout; ``via: qmp|spice``)."""

    name = "type"

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        if step.fields.get("via") == "spice":
            await vm.spice.type_text(step.value)
        else:
            await vm.qmp.type_text(step.value)
        return StepOutcome(step.value)


class _Exec(StepKind):
    fields = frozenset({"expect_exit", "input"})

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        code = fields.get("expect_exit", 0)
        if code is not None and not (isinstance(code, int) and not isinstance(code, bool)):
            return ["expect_exit: an exit status, or null for any"]
        return []

    async def _finish(self, step: Any, result: Any) -> StepOutcome:
        expected = step.fields.get("expect_exit", 0)
        output = result.stdout_text + result.stderr_text
        if expected is not None and result.exit_code != expected:
            how = f"signal {result.signal}" if result.signal else f"exit {result.exit_code}"
            raise StepFailed(f"{how}, expected exit {expected}: {output[-400:]!r}")
        return StepOutcome(output, result.stdout_text.strip())


class Exec(_Exec):
    """``exec: [argv...]`` through the guest agent (``expect_exit: 0`` by default)."""

    name = "exec"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check(value, fields)
        if not isinstance(value, list) or not value:
            problems.append("a non-empty list: [program, arg, ...]")
        return problems

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        argv = [str(a) for a in step.value]
        data = step.fields.get("input")
        result = await vm.qga.exec_and_wait(
            argv[0], argv[1:], input_data=data.encode() if data is not None else None
        )
        return await self._finish(step, result)


class Shell(_Exec):
    """``shell: "cmd"`` through the guest agent's ``sh -c``."""

    name = "shell"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        return super().check(value, fields) + ([] if isinstance(value, str) else ["a string"])

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        return await self._finish(step, await vm.qga.shell(step.value))


class Expect(StepKind):
    """``expect: {channel: console, pattern: "literal"}`` or ``{channel, regex}``: output of a
    line channel since the previous step began (past the last match), so nothing is missed."""

    name = "expect"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if isinstance(value, str):
            return []
        if not isinstance(value, Mapping):
            return ["a pattern, or {channel, pattern | regex}"]
        extra = set(value) - {"channel", "pattern", "regex"}
        if extra:
            return [f"unknown field {sorted(extra)[0]!r} (known: channel, pattern, regex)"]
        if ("pattern" in value) == ("regex" in value):
            return ["give one of pattern: or regex:"]
        if "regex" in value:
            try:
                re.compile(str(value["regex"]))
            except re.error as exc:
                return [f"regex: {exc}"]
        return []

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        spec = {"pattern": step.value} if isinstance(step.value, str) else step.value
        channel = spec.get("channel", "console")
        pattern: Any = re.compile(spec["regex"]) if "regex" in spec else str(spec["pattern"])
        line = vm.line(channel)
        found = await line.expect(pattern, after=ctx.mark_for(channel), timeout=ctx.remaining())
        ctx.matched(channel, found.mark)
        groups = [g.decode("utf-8", "replace") if g is not None else None for g in found.groups]
        return StepOutcome(found.text, groups[0] if groups else found.text)


class WaitEvent(StepKind):
    """``wait_event: STOP`` (``data: {...}`` must be a subset of the event's data): an event
    of this VM since the previous step began."""

    name = "wait_event"
    fields = frozenset({"data"})

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        wanted = step.fields.get("data") or {}
        after = ctx.event_after()
        while True:
            event = await ctx.engine.wait_event(
                str(step.value), vm=vm.name, kind="qmp", after=after, timeout=ctx.remaining()
            )
            after = event.seq
            if all(event.data.get(k) == v for k, v in wanted.items()):
                ctx.event_matched(event.seq)
                return StepOutcome(_text({"event": event.name, "data": dict(event.data)}))


class _File(StepKind):
    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if isinstance(value, Mapping) and set(value) == {"src", "dest"}:
            return []
        return ["{src: ..., dest: ...}"]


class PutFile(_File):
    """``put_file: {src: host path, dest: guest path}`` through the guest agent."""

    name = "put_file"

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        data = await trio.Path(step.value["src"]).read_bytes()
        await vm.qga.file_write(str(step.value["dest"]), data)
        return StepOutcome(f"{len(data)} bytes to {step.value['dest']}")


class GetFile(_File):
    """``get_file: {src: guest path, dest: name in the artefacts}``; output: the content."""

    name = "get_file"

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        data = await vm.qga.file_read(str(step.value["src"]))
        path = ctx.artefacts / Path(str(step.value["dest"])).name
        path.parent.mkdir(parents=True, exist_ok=True)
        await trio.Path(path).write_bytes(data)
        return StepOutcome(_text(data), _text(data))


_POWER = {
    "on": "cont",
    "resume": "cont",
    "pause": "stop",
    "reset": "system_reset",
    "off": "system_powerdown",
}
_OFF_VIA = ("auto", "acpi", "agent")


class Power(StepKind):
    """``power: on|off|reset|pause|resume`` through QMP. ``off`` asks the guest to power down
    and waits (up to the step's deadline) for QEMU's ``SHUTDOWN`` event; ``via: acpi`` presses
    the ACPI power button (``system_powerdown``: the guest must handle it), ``via: agent`` has
    the guest agent power it down (``guest-shutdown``); the default ``auto`` uses the agent
    when the VM has one, else ACPI (the demo guest handles both). A guest that ignores the
    button fails the step at its deadline, saying so. Output: the QMP status after the step
    (``shutdown`` for ``off``)."""

    name = "power"
    fields = frozenset({"via"})

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        problems = [] if value in _POWER else [f"one of {', '.join(_POWER)}"]
        if "via" in fields and (value != "off" or fields["via"] not in _OFF_VIA):
            problems.append(f"via: ({', '.join(_OFF_VIA)}) goes with power: off only")
        return problems

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        if step.value == "off":
            return await self._off(step, vm, ctx)
        await vm.qmp.execute(_POWER[step.value])
        status = await vm.qmp.query_status()
        return StepOutcome(status.status, status.status)

    async def _off(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        via = step.fields.get("via", "auto")
        if via == "auto":
            via = "agent" if _has(vm, "qga") else "acpi"
        after = ctx.engine.mark() if ctx.engine is not None else None
        with contextlib.ExitStack() as stack:
            # without an engine: the VM's own events, subscribed before the request
            shutdowns = (
                None if ctx.engine is not None else stack.enter_context(vm.events("SHUTDOWN"))
            )
            return await self._power_down(vm, ctx, via, after, shutdowns)

    async def _power_down(
        self, vm: Any, ctx: ScenarioContext, via: str, after: int | None, shutdowns: Any
    ) -> StepOutcome:
        allowed = ctx.remaining()
        async with trio.open_nursery() as nursery:
            if via == "agent":

                async def ask_agent() -> None:
                    # the agent never answers a powerdown it carries out: its channel goes
                    # down first (or the call times out); the SHUTDOWN event is the answer
                    with contextlib.suppress(ConnectionLostError, VirtrioTimeoutError):
                        await vm.qga.execute(
                            "guest-shutdown", {"mode": "powerdown"}, timeout=ctx.remaining()
                        )

                nursery.start_soon(ask_agent)
            else:
                await vm.qmp.execute("system_powerdown")
            event = await _shutdown(vm, ctx, after, shutdowns)
            nursery.cancel_scope.cancel()
        if event is None:  # raised out here: a raise inside the nursery would be a group
            how = (
                "the guest agent's guest-shutdown"
                if via == "agent"
                else "the ACPI power button (QMP system_powerdown): the guest ignores it "
                "(no ACPI button driver, or nothing acting on the button)"
            )
            raise VirtrioTimeoutError(
                f"power off via {via}: no SHUTDOWN event within {allowed:.1f}s after {how}"
            )
        output = _text({"event": event.name, "data": dict(event.data), "via": via})
        return StepOutcome(output, "shutdown")


async def _shutdown(vm: Any, ctx: ScenarioContext, after: int | None, shutdowns: Any) -> Any:
    """QEMU's ``SHUTDOWN`` event before the step's deadline (None if none came): the engine's
    (numbered above ``after``), else the VM's own."""
    if ctx.engine is None:
        with trio.move_on_after(ctx.remaining()):
            return await shutdowns.receive()
        return None
    try:
        event = await ctx.engine.wait_event(
            "SHUTDOWN", vm=vm.name, kind="qmp", after=after, timeout=ctx.remaining()
        )
    except VirtrioTimeoutError:
        return None
    ctx.event_matched(event.seq)
    return event


def _has(vm: Any, kind: str) -> bool:
    return kind in vm.channel_kinds().values()


class Sleep(StepKind):
    """``sleep: SECONDS`` (a pause a scenario asks for, not a synchronisation)."""

    name = "sleep"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        return [] if ok else ["seconds (a number >= 0)"]

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        await trio.sleep(float(step.value))
        return StepOutcome()


class Set(StepKind):
    """``set: {VAR: value, ...}``: assign variables (``${other}`` expanded)."""

    name = "set"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if isinstance(value, Mapping) and value and all(str(k).isidentifier() for k in value):
            return []
        return ["a map of variable names to values"]

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        ctx.vars.update(step.value)
        return StepOutcome(_text(step.value))


class MuxEcho(StepKind):
    """``mux_echo: "text"`` (``channel: mux0``): a new multiplexed stream to an echo peer
    carries the text there and back."""

    name = "mux_echo"
    fields = frozenset({"channel"})

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        payload = str(step.value).encode()
        stream = await vm.mux(step.fields.get("channel", "mux0")).open_stream()
        async with stream:
            await stream.send_all(payload)
            received = b""
            while len(received) < len(payload):
                chunk = await stream.receive_some()
                if not chunk:
                    break
                received += chunk
        if received != payload:
            raise StepFailed(f"echo returned {received!r}, sent {payload!r}")
        return StepOutcome(_text(received))


_CHECKS = ("equals", "not_equals", "contains", "matches", "in")


def _holds(check: str, actual: Any, wanted: Any) -> bool:
    if check == "equals":
        return bool(actual == wanted or str(actual) == str(wanted))
    if check == "not_equals":
        return str(actual) != str(wanted)
    if check == "contains":
        return str(wanted) in str(actual)
    if check == "matches":
        return re.search(str(wanted), str(actual)) is not None
    return bool(actual in wanted or str(actual) in map(str, wanted))


class Assert(StepKind):
    """``assert: {value: "${kernel}", equals|not_equals|contains|matches|in: ...}``."""

    name = "assert"

    def check(self, value: Any, fields: Mapping[str, Any]) -> list[str]:
        if not isinstance(value, Mapping) or "value" not in value:
            return ["{value: ..., equals|not_equals|contains|matches|in: ...}"]
        extra = set(value) - {"value", "message", *_CHECKS}
        if extra:
            return [f"unknown check {sorted(extra)[0]!r} (known: {', '.join(_CHECKS)})"]
        if not set(value) & set(_CHECKS):
            return [f"needs a check ({', '.join(_CHECKS)})"]
        return []

    async def run(self, step: Any, vm: Any, ctx: ScenarioContext) -> StepOutcome:
        spec = step.value
        actual = spec["value"]
        failed = []
        for check in _CHECKS:
            if check not in spec:
                continue
            ok = _holds(check, actual, spec[check])
            if not ok:
                failed.append(f"{actual!r} {check.replace('_', ' ')} {spec[check]!r}: false")
        if failed:
            raise StepFailed(spec.get("message") or "; ".join(failed))
        return StepOutcome(_text(actual), actual)


BUILTIN_STEPS: tuple[type[StepKind], ...] = (
    Qmp, Keys, Type, Exec, Shell, Expect, WaitEvent, WaitScreen, Screenshot, PutFile, GetFile,
    Power, Sleep, Set, Assert, MuxEcho,
)  # fmt: skip
