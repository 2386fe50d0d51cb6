"""Scenario files: every problem at once as file:line before anything runs; the step registry
with a real installed distribution; results on disk (results.json, junit.xml, percentiles)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from virtrio.engine.scenario import (
    DEMO_SCENARIO,
    RunReport,
    ScenarioError,
    StepRecord,
    StepRegistry,
    VmResult,
    default_steps,
    demo_scenario,
    load_scenario,
    parse_scenario,
    percentile,
    write_results,
)
from virtrio.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_scenario_parses_with_labels_and_captures(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: smoke
        timeout: 5
        vars: {greeting: hi}
        steps:
          - shell: "uname -r"
            set: kernel
            timeout: 2
          - qmp: {command: query-status}
            set: {state: '"status": "(\\w+)"'}
          - assert: {value: "${kernel} ${state} ${greeting}", contains: hi}
          - name: wait
            sleep: 0
        """,
    )
    scenario = load_scenario(path)
    assert scenario.name == "smoke"
    assert scenario.timeout == 5
    shell, qmp, check, sleep = scenario.steps
    assert (shell.kind, shell.value, shell.timeout, shell.capture) == (
        "shell",
        "uname -r",
        2.0,
        ("kernel", None),
    )
    assert qmp.capture == ("state", '"status": "(\\w+)"')
    assert sleep.label == "wait"
    assert check.label.startswith("assert value=")
    assert shell.where == f"{path}:5"


def test_every_problem_is_reported_at_once_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        steps:
          - shell: "true"
          - shel: "typo"
          - shell: "true"
            expect_exti: 0
          - exec: "not a list"
          - assert: {value: "${nowhere}", equals: 1}
          - power: sideways
          - sleep: 1
            timeout: -3
        colour: blue
        """,
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"{path}:3: steps[1]: unknown step 'shel' (known: " in text
    assert f"{path}:5: steps[2].expect_exti: unknown field for shell (known: expect_exit" in text
    assert f"{path}:6: steps[3].exec: a non-empty list" in text
    assert f"{path}:7: steps[4]: ${{nowhere}} is not set" in text
    assert f"{path}:8: steps[5].power: one of on, resume, pause, reset, off" in text
    assert f"{path}:9: steps[6].timeout: a positive number" in text
    assert f"{path}:11: colour: unknown field" in text
    assert len(problems) == 7


def test_wait_screen_shapes_are_checked_before_anything_runs() -> None:
    ok = parse_scenario(
        "- wait_screen: {change: true}\n"
        "- wait_screen: {change: true, region: [0, 0, 720, 16]}\n"
        "- wait_screen: {region: [9, 16, 36, 16], reference: ref.png, tolerance: 0.01,"
        " threshold: 8}\n  timeout: 5\n"
        "- wait_screen: {reference: whole-screen.png}\n"
    )
    assert [s.kind for s in ok.steps] == ["wait_screen"] * 4
    bad = {
        "{}": "give change: true or a reference: PNG",
        "{change: true, reference: r.png}": "give change: true or a reference",
        "{change: true, region: [0, 0, 0, 16]}": "region: [x, y, width, height]",
        "{reference: r.png, region: [1, 2, 3]}": "region: [x, y, width, height]",
        "{reference: r.png, tolerance: 2}": "tolerance: a fraction",
        "{reference: r.png, threshold: -1}": "threshold: a per-channel difference",
        "{change: true, tolerance: 0.1}": "go with a reference",
        "{reference: r.png, colour: red}": "unknown field 'colour'",
        "change": "{change: true} or {region",
    }
    for value, problem in bad.items():
        with pytest.raises(ScenarioError, match=problem.replace("[", r"\[").replace("{", r"\{")):
            parse_scenario(f"- wait_screen: {value}\n", source="w.yaml")


def test_bad_yaml_and_shapes_name_the_file() -> None:
    with pytest.raises(ScenarioError, match=r"x\.yaml:3: not valid YAML"):
        parse_scenario("steps:\n  - [unclosed\n", source="x.yaml")
    with pytest.raises(ScenarioError, match="steps: needs a list"):
        parse_scenario("name: empty\n", source="x.yaml")
    with pytest.raises(ScenarioError, match="two step kinds"):
        parse_scenario("- {shell: 'true', sleep: 1}\n")
    with pytest.raises(ScenarioError, match="cannot type"):
        parse_scenario("- type: 'caf\u00e9'\n")
    with pytest.raises(ScenarioError, match="unknown key"):
        parse_scenario("- keys: ctrl-alt-dle\n")


def test_the_demo_scenario_and_the_examples_validate() -> None:
    assert demo_scenario().name == "demo"
    examples = sorted((Path(__file__).parents[3] / "docs" / "examples").glob("*.yaml"))
    assert examples
    for example in examples:
        load_scenario(example)
    # docs/examples/demo.yaml is the built-in demo (run by test_run and test_spice): its text,
    # under a comment line, so the documented one cannot drift from what `virtrio run` runs
    header, _, documented = (examples[0].parent / "demo.yaml").read_text().partition("\n")
    assert header.startswith("# ")
    assert documented == DEMO_SCENARIO


STEP_MODULE = '''
from virtrio.engine.scenario import StepKind, StepOutcome

class Shout(StepKind):
    """shout: TEXT -> the text upper-cased (no VM needed)."""
    name = "shout"
    fields = frozenset({"times"})

    async def run(self, step, vm, ctx):
        return StepOutcome((step.value.upper() + " ") * int(step.fields.get("times", 1)))

class Qmp(Shout):
    name = "qmp"
'''


def install_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """A real installed distribution: a module and its dist-info on a sys.path entry."""
    (root / "virtrio_shout.py").write_text(STEP_MODULE)
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[virtrio.steps]\n{lines}\n")
    (info / "RECORD").write_text("")


def test_an_installed_distribution_adds_a_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(tmp_path, "virtrio-shout", {"shout": "virtrio_shout:Shout"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = default_steps()
    assert "shout" in registry.names()
    scenario = parse_scenario("- shout: hey\n  times: 2\n", registry=registry)
    assert scenario.steps[0].fields == {"times": 2}
    with pytest.raises(ScenarioError, match="unknown field for shout"):
        parse_scenario("- shout: hey\n  loud: yes\n", registry=registry)
    # without the distribution the same file is an error before anything runs
    with pytest.raises(ScenarioError, match="unknown step 'shout'"):
        parse_scenario("- shout: hey\n", registry=StepRegistry())


def test_a_duplicate_or_broken_step_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dup").mkdir()
    install_distribution(tmp_path / "dup", "virtrio-dup", {"qmp": "virtrio_shout:Qmp"})
    monkeypatch.syspath_prepend(str(tmp_path / "dup"))
    with pytest.raises(ConfigError, match=r"'qmp' registered twice \(by virtrio and virtrio-dup"):
        default_steps()
    monkeypatch.syspath_prepend(str(tmp_path / "gone"))
    (tmp_path / "gone").mkdir()
    install_distribution(tmp_path / "gone", "virtrio-gone", {"gone": "virtrio_nothere:X"})
    registry = StepRegistry()
    with pytest.raises(ConfigError, match="'gone' from virtrio-gone does not load"):
        registry.load_entry_points()


@given(st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=50))
def test_percentiles_are_observed_values_in_order(values: list[float]) -> None:
    p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
    assert p50 in values
    assert p95 in values
    assert p99 in values
    assert min(values) <= p50 <= p95 <= p99 <= max(values)


def test_results_on_disk_load_in_junitparser(tmp_path: Path) -> None:
    from junitparser import Error, Failure, JUnitXml, Skipped

    ok = VmResult("a", [StepRecord("a", 1, -1, "connect", "connect", "passed", 1.5),
                        StepRecord("a", 1, 0, "shell true", "shell", "passed", 0.25, "x")],
                  "passed")  # fmt: skip
    bad = VmResult("b", [StepRecord("b", 1, -1, "connect", "connect", "passed", 1.0),
                         StepRecord("b", 1, 0, "assert", "assert", "failed", 0.1, "",
                                    "StepFailed", "1 equals 2: false", "s.yaml:4")],
                   "failed")  # fmt: skip
    timeout = StepRecord(
        "c", 1, -1, "connect", "connect", "failed", 9.0, "", "VirtrioTimeoutError", "over 9 s"
    )
    broke = VmResult("c", [timeout], "failed")
    gone = VmResult("d", [StepRecord("d", 1, -1, "connect", "connect", "cancelled", 0.5)],
                    "cancelled")  # fmt: skip
    report = RunReport("smoke", "s.yaml", {v.vm: v for v in (ok, bad, broke, gone)}, 1, 4, True)
    report.channel_output = {"b": {"console.log": b"login: \x1b[6n\x00oops\n"}}
    write_results(report, tmp_path / "r")
    data = json.loads((tmp_path / "r" / "results.json").read_text())
    assert data["passed"] is False
    assert data["vms"]["a"]["status"] == "passed"
    assert [s["step"] for s in data["statistics"]] == ["connect", "shell true"]
    assert data["records"][3]["error"] == {"class": "StepFailed", "message": "1 equals 2: false"}
    assert (tmp_path / "r" / "artefacts" / "b" / "console.log").read_bytes().endswith(b"oops\n")

    xml = JUnitXml.fromfile(str(tmp_path / "r" / "junit.xml"))
    suites = list(xml)
    assert [s.name for s in suites] == ["smoke"]
    cases = {c.name: c for c in suites[0]}
    assert set(cases) == {"a", "b", "c", "d"}
    assert cases["a"].is_passed
    (failure,) = cases["b"].result
    assert isinstance(failure, Failure)
    assert failure.type == "StepFailed"
    assert failure.message == "steps[0] (assert): StepFailed: 1 equals 2: false"
    assert "oops" in cases["b"].system_out
    assert "\x1b" not in cases["b"].system_out
    assert isinstance(cases["c"].result[0], Error)
    assert isinstance(cases["d"].result[0], Skipped)
    # what Jenkins' and GitLab's readers need: testsuite(s) with counts, testcases with a
    # name, a classname and a numeric time, failure/error with message and type
    import xml.etree.ElementTree as ET

    root = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    assert suite is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == ("4", "1", "1", "1")
    for case in suite.iter("testcase"):
        assert case.get("name")
        assert case.get("classname") == "virtrio.smoke"
        float(case.get("time") or "x")
