"""The terminal daemon serving real shells on real PTYs, in the test's nursery, on a socket in
the test's temp dir (stopped — every session killed and reaped — when the test ends)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from virtrio.engine.pty import PtyDaemon, PtyDaemonConfig, serve_pty_daemon


@pytest.fixture
def pty_config(tmp_path: Path) -> PtyDaemonConfig:
    """The daemon's configuration for a test: seed defaults, a private socket dir, /bin/sh."""
    return PtyDaemonConfig(socket_path=tmp_path / "pty" / "socket", default_shell="/bin/sh")


@pytest.fixture
async def pty_daemon(nursery: trio.Nursery, pty_config: PtyDaemonConfig) -> PtyDaemon:
    """A running daemon with :func:`pty_config`."""
    daemon: PtyDaemon = await nursery.start(serve_pty_daemon, pty_config)
    return daemon
