"""The public surface of the terminal daemon's packages changes only on purpose."""

from __future__ import annotations

import inspect

import virtrio.channels.pty
import virtrio.engine.pty


def public(module: object) -> set[str]:
    return {name for name in dir(module) if not name.startswith("_")}


def test_virtrio_engine_pty() -> None:
    assert public(virtrio.engine.pty) >= {
        "ENVIRONMENT", "EmulatorFactory", "PtyDaemon", "PtyDaemonConfig", "PtyDaemonStatistics",
        "PyteEmulator", "Session", "SessionError", "TerminalEmulator", "serve_pty_daemon",
    }  # fmt: skip
    for module in (virtrio.engine.pty, virtrio.channels.pty):
        for name in public(module):
            obj = getattr(module, name)
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
        "PtyClient", "PtyRequestError", "default_socket_path", "open_pty_client",
    }  # fmt: skip
