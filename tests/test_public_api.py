"""The public surface changes only on purpose: this lists it."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "virtrio.errors": [
        "ChannelUnavailableError", "CommandError", "ConfigError", "ConnectError",
        "ConnectionLostError", "LocalProtocolError", "ProtocolError", "VirtrioError",
        "VirtrioTimeoutError",
    ],
    "virtrio.channels.qmp": [
        "QCODES", "QemuVersion", "QmpClient", "QmpCommandError", "QmpCommands", "QmpError",
        "QmpEvent", "QmpGreeting", "QmpLocalProtocolError", "QmpProtocol", "QmpProtocolError",
        "QmpState", "VmStatus", "open_qmp", "parse_combo", "text_to_combos",
    ],
    "virtrio.channels.qga": [
        "ExecResult", "GuestAgentInfo", "QgaClient", "QgaCommandError", "QgaCommands",
        "QgaError", "QgaLocalProtocolError", "QgaProtocol", "QgaProtocolError", "open_qga",
    ],
    "virtrio.channels.yamux": [
        "DEFAULT_WINDOW", "Flag", "FrameType", "GoAwayCode", "MuxSession", "MuxStream",
        "StreamResetError", "StreamState", "YamuxError", "YamuxLocalProtocolError",
        "YamuxProtocolError", "YamuxSession", "open_mux",
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
        "MessagePool", "MessageServer", "Middleware", "MiddlewareError", "Probe", "RateLimit",
        "ServerConfig", "SupervisedConnection", "TokenBucket", "Transport", "XtransportTransport",
        "YamuxTransport", "encode_length_prefixed", "open_message_pool",
        "open_supervised_connection", "with_xtransport", "with_yamux",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        obj = getattr(mod, name)
        if callable(obj) or isinstance(obj, type):
            assert obj.__doc__, f"{module}.{name} has no docstring"


def test_nurseries_exports_resolve() -> None:
    nurseries = importlib.import_module("virtrio.nurseries")
    for name in nurseries.__all__:
        assert getattr(nurseries, name).__doc__, name


def test_py_typed_is_shipped() -> None:
    import virtrio

    assert (importlib.resources.files(virtrio) / "py.typed").is_file()
