"""The daemon's configuration: defaults and environment variables exactly as seed 003 lists them.

=================================  =============================  ==========================
variable                           default                        field
=================================  =============================  ==========================
``RUST_PTY_SOCKET_PATH``           ``$HOME/.vibest/pty/socket``   ``socket_path``
``RUST_PTY_MAX_CONNECTIONS``       100                            ``max_connections``
``RUST_PTY_MAX_SESSIONS``          100                            ``max_sessions``
``RUST_PTY_SCROLLBACK_LINES``      1000                           ``scrollback_lines``
``RUST_PTY_FLOW_THRESHOLD``        4096                           ``flow_threshold``
``RUST_PTY_FLOW_MAX_QUEUE_SIZE``   16384                          ``max_queue_size``
``RUST_PTY_FLOW_AUTO_DISCONNECT``  false                          ``auto_disconnect``
``VIRTRIO_PTY_ECHO_SPIN_US``       100                            ``echo_spin`` (seconds)
=================================  =============================  ==========================

The last one is virtrio's own (the seed has no such knob): how long, at most, a connection
busy-polls a session's PTY for the echo after writing input to it, instead of going back to
the event loop and being woken for it (see ``echo_spin`` below; 0 never).

The flow-control settings count *chunks* of :data:`CHUNK_BYTES` (8 KiB, the seed's read size),
whatever the size of the daemon's own reads: a subscriber's queue holds at most
``max_queue_size`` x 8 KiB of output (128 MiB by default), and turns yellow when less than
``flow_threshold`` x 8 KiB (32 MiB) of room is left.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from virtrio.channels.pty import DEFAULT_MAX_FRAME_SIZE, default_socket_path
from virtrio.errors import ConfigError

from ._emulator import EmulatorFactory, PyteEmulator

__all__ = ["CHUNK_BYTES", "ENVIRONMENT", "PtyDaemonConfig", "default_socket_path"]

#: The unit of ``flow_threshold`` and ``max_queue_size``: the seed daemon's read buffer.
CHUNK_BYTES = 8192


def _at_least(minimum: int) -> Callable[[Any, attrs.Attribute[int], int], None]:
    def check(_inst: Any, attr: attrs.Attribute[int], value: int) -> None:
        if value < minimum:
            raise ConfigError(f"pty daemon {attr.name} must be >= {minimum}, got {value}")

    return check


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={text!r}: expected true or false")


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected an integer") from None


#: Environment variable → (config field, parser).
ENVIRONMENT: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "RUST_PTY_SOCKET_PATH": ("socket_path", lambda _n, t: Path(t)),
    "RUST_PTY_MAX_CONNECTIONS": ("max_connections", _parse_int),
    "RUST_PTY_MAX_SESSIONS": ("max_sessions", _parse_int),
    "RUST_PTY_SCROLLBACK_LINES": ("scrollback_lines", _parse_int),
    "RUST_PTY_FLOW_THRESHOLD": ("flow_threshold", _parse_int),
    "RUST_PTY_FLOW_MAX_QUEUE_SIZE": ("max_queue_size", _parse_int),
    "RUST_PTY_FLOW_AUTO_DISCONNECT": ("auto_disconnect", _parse_bool),
    "VIRTRIO_PTY_ECHO_SPIN_US": ("echo_spin", lambda n, t: _parse_int(n, t) / 1e6),
}


def _spin_budget(_inst: Any, attr: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value < math.inf:  # (NaN fails too)
        raise ConfigError(f"pty daemon {attr.name} must be a finite number >= 0, got {value}")


@attrs.frozen
class PtyDaemonConfig:
    """Everything the daemon needs; build it with :meth:`from_env` to honour the environment."""

    socket_path: Path = attrs.field(factory=default_socket_path, converter=Path)
    max_connections: int = attrs.field(default=100, validator=_at_least(1))
    max_sessions: int = attrs.field(default=100, validator=_at_least(1))
    scrollback_lines: int = attrs.field(default=1000, validator=_at_least(0))
    #: A yellow warning when a subscriber's free queue room falls below this many chunks
    #: (of :data:`CHUNK_BYTES`).
    flow_threshold: int = attrs.field(default=4096, validator=_at_least(0))
    #: Output chunks (of :data:`CHUNK_BYTES`) queued per subscriber before red (and, with
    #: auto_disconnect, disconnect): the byte bound of a subscriber that never reads.
    max_queue_size: int = attrs.field(default=16384, validator=_at_least(1))
    auto_disconnect: bool = False
    #: Largest frame a client may send.
    max_frame_size: int = attrs.field(default=DEFAULT_MAX_FRAME_SIZE, validator=_at_least(64))
    #: Program of a session whose Create names none (``$SHELL``, else ``/bin/sh``).
    default_shell: str = attrs.field(factory=lambda: os.environ.get("SHELL") or "/bin/sh")
    #: Raw output kept for a late attach while the emulator catches up (bytes).
    emulator_backlog: int = attrs.field(default=128 * 1024, validator=_at_least(1024))
    #: The terminal emulator of each session (``(cols, rows, scrollback) -> emulator``).
    emulator: EmulatorFactory = PyteEmulator
    #: Seconds to wait, after a session's process exited, for the rest of its output (a
    #: background job may hold the terminal open forever).
    drain_timeout: float = 1.0
    #: The most a connection busy-polls a session's PTY for the echo after writing input to it
    #: (seconds; 0: never). A program on a PTY echoes within tens of microseconds, and being
    #: woken for it costs CPU and latency: polling catches it in the same pass. The window
    #: adapts (:class:`~virtrio.primitives.SpinPolicy`): it stops polling for a connection
    #: whose input gets no prompt echo; it never polls while another task is ready to run or
    #: past the event loop's next timer, and stops once another session's PTY is readable.
    #: On the 2-core benchmark VM, with the client polling too (``open_pty_client(spin=)``),
    #: it cut the echo's latency by 0.79/0.86 of the client's poll alone where waking a CPU is
    #: slow, saved nothing where it is fast, and cut an echo's latency during another
    #: session's flood by 3x without slowing the flood (README, issue 16).
    echo_spin: float = attrs.field(default=100e-6, validator=_spin_budget)

    def __attrs_post_init__(self) -> None:
        if self.flow_threshold > self.max_queue_size:
            raise ConfigError(
                f"pty daemon flow_threshold ({self.flow_threshold}) exceeds "
                f"max_queue_size ({self.max_queue_size})"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> PtyDaemonConfig:
        """Defaults, then the ``RUST_PTY_*`` variables of ``environ`` (default: the process
        environment), then ``overrides`` (CLI options; None values are ignored).

        Raises:
            ConfigError: a variable or option is malformed or out of range.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, (field, parse) in ENVIRONMENT.items():
            if (text := env.get(name)) is not None and text != "":
                values[field] = parse(name, text)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "socket_path" not in values:
            values["socket_path"] = default_socket_path(env)
        return cls(**values)
