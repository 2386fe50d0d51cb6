"""The built-in demo scenario of ``virtrio run`` without arguments (docs/examples/demo.yaml)."""

from __future__ import annotations

from ._model import Scenario, parse_scenario

__all__ = ["DEMO_SCENARIO", "demo_scenario"]

#: The demo scenario's YAML.
DEMO_SCENARIO = """\
name: demo
description: >
  The guest agent runs a command, text typed on the keyboard comes back on the serial console,
  QMP stop/cont with their events, a yamux echo through mux0, a screenshot if Spice is on.
timeout: 30
steps:
  - name: guest agent exec
    exec: [uname, -sr]
    set: kernel
  - assert: {value: "${kernel}", matches: "^Linux "}
  - name: route the keyboard to the serial console
    shell: "[ -e /run/kbd ] || { touch /run/kbd; cat /dev/tty1 >/dev/ttyS0 2>&1 & }"
  - name: type on the keyboard
    type: "typed on ${vm}\\n"
  - name: read it back on the serial console
    expect: {channel: console, pattern: "typed on ${vm}"}
  - qmp: stop
  - wait_event: STOP
  - qmp: query-status
    set: {paused: '"status": "(\\w+)"'}
  - assert: {value: "${paused}", equals: paused}
  - qmp: cont
  - wait_event: RESUME
  - name: yamux echo through mux0
    mux_echo: "ping from ${vm} over yamux"
  - screenshot: screen
    required: false
"""


def demo_scenario() -> Scenario:
    """The demo scenario, parsed."""
    return parse_scenario(DEMO_SCENARIO, source="<demo>")
