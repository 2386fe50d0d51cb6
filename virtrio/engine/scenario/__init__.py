"""Scenarios run across the fleet: YAML or Python, checked before they run, one task per VM.

::

    scenario = load_scenario("smoke.yaml")          # ScenarioError: every problem, file:line
    async with open_engine(default_fleet(vms=2)) as engine:
        report = await run_scenario(engine, scenario, parallel=2, repeat=3)
    write_results(report, "virtrio-results/run1")   # results.json, junit.xml, artefacts/

Steps are a registry (:class:`StepRegistry`); a distribution adds its own through the
entry-point group ``virtrio.steps``. ``virtrio run`` is the command line of all this.
"""

from ._context import (
    ScenarioContext as ScenarioContext,
    StepFailed as StepFailed,
    StepRecord as StepRecord,
)
from ._demo import DEMO_SCENARIO as DEMO_SCENARIO, demo_scenario as demo_scenario
from ._model import (
    PythonScenario as PythonScenario,
    Scenario as Scenario,
    ScenarioError as ScenarioError,
    Step as Step,
    load_scenario as load_scenario,
    parse_scenario as parse_scenario,
)
from ._registry import (
    ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
    StepKind as StepKind,
    StepOutcome as StepOutcome,
    StepRegistry as StepRegistry,
    default_steps as default_steps,
)
from ._results import (
    percentile as percentile,
    report_json as report_json,
    step_statistics as step_statistics,
    write_results as write_results,
)
from ._run import RunReport as RunReport, VmResult as VmResult, run_scenario as run_scenario

__all__ = [
    "DEMO_SCENARIO",
    "ENTRY_POINT_GROUP",
    "PythonScenario",
    "RunReport",
    "Scenario",
    "ScenarioContext",
    "ScenarioError",
    "Step",
    "StepFailed",
    "StepKind",
    "StepOutcome",
    "StepRecord",
    "StepRegistry",
    "VmResult",
    "default_steps",
    "demo_scenario",
    "load_scenario",
    "parse_scenario",
    "percentile",
    "report_json",
    "run_scenario",
    "step_statistics",
    "write_results",
]
