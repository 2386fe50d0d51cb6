"""Fixtures of the messaging tests: every test runs over TCP and Unix, and every transport."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtrio.channels.messaging import Transport

from .helpers import TRANSPORTS


@pytest.fixture(params=["tcp", "unix"])
def listen_address(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test server listens: loopback TCP on a free port, or a Unix socket."""
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"unix:{tmp_path}/m.sock"


@pytest.fixture(params=sorted(TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> Transport:
    """Each transport a client and server can be built with."""
    return TRANSPORTS[request.param]
