"""The public surface of the terminal daemon's packages changes only on purpose."""

from __future__ import annotations

import inspect

import virtrio.channels.pty
import virtrio.pty


def public(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def test_virtrio_pty() -> None:
    assert public(virtrio.pty) >= {
        "BackpressureWarning", "ENVIRONMENT", "EmulatorFactory", "Error", "Exit", "Level",
        "Output", "PtyClient", "PtyDaemon", "PtyDaemonConfig", "PtyRequestError",
        "PyteEmulator", "Session", "SessionError", "SessionInfo", "TerminalEmulator",
        "PtyDaemonStatistics",
        "default_socket_path", "open_pty_client", "serve_pty_daemon",
    }  # fmt: skip
    for name in public(virtrio.pty):
        obj = getattr(virtrio.pty, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert getattr(obj, "__doc__", None), f"{name} has no docstring"


def test_virtrio_channels_pty() -> None:
    names = public(virtrio.channels.pty)
    assert names >= {
        "FrameDecoder", "encode", "encode_output", "decode_payload", "NEED_DATA",
        "PtyProtocolError", "FrameTooLargeError", "TruncatedFrameError", "InvalidMsgpackError",
        "InvalidMessageError", "UnknownTypeError", "UnexpectedTypeError", "ErrorCode",
        "REQUEST_TYPES", "EVENT_TYPES", "Create", "CreateOptions", "Created", "Attach", "Detach",
        "Input", "Resize", "Kill", "Signal", "Ack", "List", "Sessions", "SessionInfo", "Ok",
        "Error", "Output", "Exit", "BackpressureWarning", "Level",
    }  # fmt: skip
