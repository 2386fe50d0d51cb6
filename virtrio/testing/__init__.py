"""Testing with virtrio: hypothesis strategies, a power-state machine, and a pytest plugin.

- :mod:`virtrio.testing.strategies`: key combos, US-typeable text, byte splits, scenario steps,
  QMP commands typed by the live QEMU's own schema.
- :func:`run_power_machine`: a hypothesis ``RuleBasedStateMachine`` over a real VM's power
  states (pause, resume, reset), checking QMP status and events after each rule.
- :mod:`virtrio.testing.pytest_plugin`: fixtures ``virtrio_engine``, ``vm``, ``vms``,
  ``fresh_vm`` (registered as the pytest11 entry point ``virtrio``).

Outside the layers (it builds on the engine); needs the ``hypothesis`` package.
"""

from ._power import (
    PowerStateMachine as PowerStateMachine,
    power_state_machine as power_state_machine,
    run_power_machine as run_power_machine,
)

__all__ = ["PowerStateMachine", "power_state_machine", "run_power_machine"]
