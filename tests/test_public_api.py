"""The public surface changes only on purpose: this lists it."""

from __future__ import annotations

import importlib
import typing

import pytest

PUBLIC = {
    "virtrio.errors": [
        "ChannelUnavailableError", "CommandError", "ConfigError", "ConnectError",
        "ConnectionLostError", "LocalProtocolError", "ProtocolError", "VirtrioError",
        "VirtrioTimeoutError",
    ],
    "virtrio.channels.qmp": [
        "QCODES", "QemuVersion", "QmpClient", "QmpCommandError", "QmpCommands", "QmpEvent",
        "QmpGreeting", "QmpProtocol", "QmpProtocolError", "VmStatus", "open_qmp", "parse_combo",
        "text_to_combos",
    ],
    "virtrio.channels.qga": [
        "ExecResult", "GuestAgentInfo", "QgaClient", "QgaCommandError", "QgaCommands",
        "QgaProtocol", "QgaProtocolError", "open_qga",
    ],
    "virtrio.channels.yamux": [
        "DEFAULT_WINDOW", "Flag", "FrameType", "GoAwayCode", "MuxSession", "MuxStream",
        "SessionLostError", "StreamResetError", "YamuxError", "YamuxProtocolError", "YamuxSession",
        "open_mux",
    ],
    "virtrio.channels.xtransfer": [
        "DEFAULT_MAX_MESSAGE_SIZE", "MAX_FRAME_SIZE", "NEED_DATA", "ConnectionClosed", "Message",
        "MessageDelivered", "NeedData", "PacketType", "XtransferChannel", "XtransferChecksumError",
        "XtransferConfig", "XtransferError", "XtransferFramingError", "XtransferMagicError",
        "XtransferMessageTooLargeError", "XtransferProtocol", "XtransferTruncatedError",
        "XtransferVersionError", "encode_packet", "open_xtransfer",
    ],
    "virtrio.channels.messaging": [
        "DEFAULT_CLIENT_CID", "DEFAULT_PORT", "ClientConfig", "Compression", "Encryption",
        "HealthCheck", "HealthCheckError", "LengthPrefixDecoder", "LengthPrefixError",
        "LengthPrefixedChannel", "MessageChannel", "MessageCipher", "MessageClient",
        "MessageCompressor", "MessageConnection",
        "MessageServer", "Middleware", "MiddlewareError", "Probe", "RateLimit",
        "ServerConfig", "TokenBucket", "Transport", "XtransportTransport",
        "YamuxTransport", "encode_length_prefixed", "with_xtransport", "with_yamux",
    ],
    "virtrio.primitives": [
        "Backoff", "ChannelState", "Connection", "Deadline", "Fanout", "Pressure", "PressureLevel",
        "StateChange", "SubscriberOverflowError", "Subscription", "Supervisor",
        "open_service_nursery",
    ],
    "virtrio.nurseries": [
        "Backoff", "ChannelState", "Connection", "Fanout", "Pressure", "PressureLevel",
        "StateChange", "SubscriberOverflowError", "Subscription", "SupervisedQga",
        "SupervisedQmp", "Supervisor", "Vm", "open_vm",
    ],
    "virtrio.nurseries.spice": ["SpiceManager", "SupervisedSpice", "open_spice_manager"],
    "virtrio.nurseries.messaging": [
        "MessagePool", "SupervisedConnection", "connect_supervised", "open_pool",
    ],
    "virtrio.engine.pty": [
        "ENVIRONMENT", "EmulatorFactory", "PtyDaemon", "PtyDaemonConfig", "PtyDaemonStatistics",
        "PyteEmulator", "Session", "SessionError", "TerminalEmulator", "serve_pty_daemon",
    ],
    "virtrio.pty": [
        "BackpressureWarning", "Error", "Exit", "Level", "Output", "PtyClient", "PtyEvent",
        "PtyRequestError", "SessionInfo", "default_socket_path", "open_pty_client",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        obj = getattr(mod, name)
        if typing.get_origin(obj) is not None:
            continue  # a type alias (EmulatorFactory = Callable[...]) cannot hold a docstring
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, f"{module}.{name} has no docstring"


def test_nurseries_re_exports_the_primitives() -> None:
    nurseries = importlib.import_module("virtrio.nurseries")
    primitives = importlib.import_module("virtrio.primitives")
    for name in set(nurseries.__all__) & set(primitives.__all__):
        assert getattr(nurseries, name) is getattr(primitives, name), name


def test_py_typed_is_shipped() -> None:
    import virtrio

    assert (importlib.resources.files(virtrio) / "py.typed").is_file()
