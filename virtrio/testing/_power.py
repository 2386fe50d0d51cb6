"""A hypothesis state machine over a VM's power states, against a real VM.

::

    async def test_power(vm):                       # a Vm (open_vm or engine.vm(...))
        await run_power_machine(vm, settings(max_examples=5, stateful_step_count=6))

Each rule (pause: ``stop``, resume: ``cont``, reset: ``system_reset``) sends its QMP command,
waits for its event (``STOP``, ``RESUME``, ``RESET``) and then checks ``query-status`` against
the model. Hypothesis runs the
machine in a worker thread; the rules reach the VM in the Trio loop through
``trio.from_thread.run``, so the VM stays in the loop that owns it.

A reset needs a VM that resets rather than shuts down on it: a QEMU started with
``-no-reboot`` (the demo guest) needs ``-action reboot=reset`` after it.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import settings as Settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

__all__ = ["PowerStateMachine", "power_state_machine", "run_power_machine"]

#: Seconds each rule may wait for its event.
EVENT_TIMEOUT = 30.0


async def _act(vm: Any, command: str, event: str) -> str:
    with vm.events(event) as events:
        await vm.qmp.execute(command)
        with trio.fail_after(EVENT_TIMEOUT):
            received = await events.receive()
    status = await vm.qmp.query_status()
    return f"{received.name}:{status.status}"


async def _status(vm: Any) -> str:
    return str((await vm.qmp.query_status()).status)


class PowerStateMachine(RuleBasedStateMachine):
    """The model: ``running``, ``paused`` or ``prelaunch``; bound to a VM by
    :func:`power_state_machine`."""

    vm: Any = None

    def __init__(self) -> None:
        super().__init__()
        status = trio.from_thread.run(_status, self.vm)
        if status in ("paused", "prelaunch"):
            trio.from_thread.run(_act, self.vm, "cont", "RESUME")
        self.model = "running"
        #: Every (rule, event:status) seen, for the test to inspect.
        self.history: list[tuple[str, str]] = []

    def _expect(self, rule_name: str, command: str, event: str) -> None:
        seen = trio.from_thread.run(_act, self.vm, command, event)
        self.history.append((rule_name, seen))
        name, _, status = seen.partition(":")
        assert name == event, f"{rule_name}: got event {name}, expected {event}"
        assert status == self.model, f"{rule_name}: status {status}, model says {self.model}"

    @precondition(lambda self: self.model == "running")
    @rule()
    def pause(self) -> None:
        """``stop``: a STOP event, then ``paused``."""
        self.model = "paused"
        self._expect("pause", "stop", "STOP")

    @precondition(lambda self: self.model in ("paused", "prelaunch"))
    @rule()
    def resume(self) -> None:
        """``cont``: a RESUME event, then ``running``."""
        self.model = "running"
        self._expect("resume", "cont", "RESUME")

    @rule()
    def reset(self) -> None:
        """``system_reset``: a RESET event; a running VM keeps running, one that is not
        running is ``prelaunch`` after it (QEMU's runstate rule, found by this machine)."""
        if self.model != "running":
            self.model = "prelaunch"
        self._expect("reset", "system_reset", "RESET")

    @invariant()
    def status_matches(self) -> None:
        """``query-status`` agrees with the model after every rule."""
        status = trio.from_thread.run(_status, self.vm)
        assert status == self.model, f"query-status says {status}, model says {self.model}"

    def teardown(self) -> None:
        if self.model != "running":
            trio.from_thread.run(_act, self.vm, "cont", "RESUME")


def power_state_machine(vm: Any) -> type[PowerStateMachine]:
    """A :class:`PowerStateMachine` class bound to ``vm``."""
    return type("VmPowerStates", (PowerStateMachine,), {"vm": vm})


async def run_power_machine(vm: Any, settings: Settings | None = None) -> None:
    """Run the power state machine on ``vm`` (in a worker thread; rules call back into this
    loop). Raises what hypothesis raises: the shrunk failing sequence's assertion."""
    machine = power_state_machine(vm)
    await trio.to_thread.run_sync(
        lambda: run_state_machine_as_test(machine, settings=settings), abandon_on_cancel=False
    )
