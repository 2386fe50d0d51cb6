"""Shared test configuration: hypothesis profiles and the real-peer fixtures of tests/peers/."""

from __future__ import annotations

import os
import pkgutil

from hypothesis import HealthCheck, settings

from tests import peers

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# every module of tests/peers is a plugin: its fixtures are available to all tests
pytest_plugins = [f"tests.peers.{m.name}" for m in pkgutil.iter_modules(peers.__path__)]
