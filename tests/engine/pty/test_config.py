"""The daemon's configuration: the seed's defaults and environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtrio.engine.pty import PtyDaemonConfig
from virtrio.errors import ConfigError


def test_the_seeds_defaults() -> None:
    config = PtyDaemonConfig.from_env({"HOME": "/home/u"})
    assert config.socket_path == Path("/home/u/.vibest/pty/socket")
    assert (config.max_connections, config.max_sessions, config.scrollback_lines) == (
        100,
        100,
        1000,
    )
    assert (config.flow_threshold, config.max_queue_size, config.auto_disconnect) == (
        4096,
        16384,
        False,
    )


def test_environment_then_options() -> None:
    env = {
        "RUST_PTY_SOCKET_PATH": "/run/x.sock",
        "RUST_PTY_MAX_CONNECTIONS": "7",
        "RUST_PTY_MAX_SESSIONS": "8",
        "RUST_PTY_SCROLLBACK_LINES": "50",
        "RUST_PTY_FLOW_THRESHOLD": "8192",
        "RUST_PTY_FLOW_MAX_QUEUE_SIZE": "32768",
        "RUST_PTY_FLOW_AUTO_DISCONNECT": "true",
    }
    config = PtyDaemonConfig.from_env(env, max_sessions=3, auto_disconnect=None)
    assert config.socket_path == Path("/run/x.sock")
    assert (config.max_connections, config.max_sessions, config.scrollback_lines) == (7, 3, 50)
    assert (config.flow_threshold, config.max_queue_size, config.auto_disconnect) == (
        8192,
        32768,
        True,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RUST_PTY_MAX_SESSIONS": "many"}, "RUST_PTY_MAX_SESSIONS='many': expected an integer"),
        ({"RUST_PTY_FLOW_AUTO_DISCONNECT": "maybe"}, "expected true or false"),
        ({"RUST_PTY_MAX_CONNECTIONS": "0"}, "max_connections must be >= 1"),
        ({"RUST_PTY_FLOW_THRESHOLD": "20000"}, "exceeds max_queue_size"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PtyDaemonConfig.from_env({"HOME": "/h", **env})


def test_the_echo_spin_is_virtrios_own_knob_in_microseconds() -> None:
    assert PtyDaemonConfig.from_env({"HOME": "/h"}).echo_spin == 100e-6
    env = {"HOME": "/h", "VIRTRIO_PTY_ECHO_SPIN_US": "250"}
    assert PtyDaemonConfig.from_env(env).echo_spin == 250e-6
    assert PtyDaemonConfig.from_env({**env, "VIRTRIO_PTY_ECHO_SPIN_US": "0"}).echo_spin == 0
    for bad in (-1e-6, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="echo_spin"):
            PtyDaemonConfig(echo_spin=bad)
