"""Shared test configuration: hypothesis profiles, the real-peer fixtures of tests/peers/, and
the check that no test leaves a task, fd, thread or child process behind (tests/leaks.py)."""

from __future__ import annotations

import os
import pkgutil
from collections.abc import Iterator

import pytest
import trio
from hypothesis import HealthCheck, settings

from tests import leaks, peers

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# every module of tests/peers is a plugin: its fixtures are available to all tests
pytest_plugins = [f"tests.peers.{m.name}" for m in pkgutil.iter_modules(peers.__path__)]


# -- nothing left over after a test (tests/leaks.py) ------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every Trio test runs with the task-leak instrument (after pytest-trio marked it)."""
    for item in items:
        marker = item.get_closest_marker("trio")
        if marker is None:
            continue
        run = marker.kwargs.get("run", trio.run)
        instrument = leaks.TaskLeakInstrument()
        item.stash[_INSTRUMENT] = instrument
        item.add_marker(pytest.mark.trio(run=leaks.run_with_checks(run, instrument)), append=False)


_INSTRUMENT = pytest.StashKey[leaks.TaskLeakInstrument]()


@pytest.fixture(autouse=True)
def nothing_left_over(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test that leaves a task, fd, thread or child process behind, naming it."""
    before = leaks.Snapshot.take()
    yield
    problems = []
    instrument = request.node.stash.get(_INSTRUMENT, None)
    if instrument is not None:
        problems += [f"Trio task {name} still running" for name in instrument.leaked]
        instrument.leaked.clear()
    problems += leaks.leaked(before)
    if problems:
        pytest.fail("left over after the test:\n  " + "\n  ".join(problems), pytrace=False)
