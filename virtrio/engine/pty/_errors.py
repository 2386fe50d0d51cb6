"""The error a session request fails with: :class:`SessionError`, and signal names."""

from __future__ import annotations

import signal as signals

from virtrio.channels.pty import ErrorCode
from virtrio.errors import LocalProtocolError

__all__ = ["SessionError", "parse_signal"]


class SessionError(LocalProtocolError):
    """A request on a session cannot be done; ``code`` is the error reply's code."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def parse_signal(value: int | str) -> int:
    """A signal number from a number or a name (``"SIGINT"``, ``"int"``).

    Raises:
        SessionError: no such signal.
    """
    if isinstance(value, int):
        if value in signals.valid_signals():
            return value
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if isinstance(number := getattr(signals.Signals, name, None), signals.Signals):
            return int(number)
    raise SessionError(f"unknown signal {value!r}", ErrorCode.INVALID_ARGUMENT)
