"""The public surface changes only on purpose: this lists it."""

from __future__ import annotations
import __future__

import importlib
import pkgutil
import types
import typing

import pytest

PUBLIC = {
    "virtrio": [
        "ChannelUnavailableError", "CommandError", "ConfigError", "ConnectError",
        "ConnectionLostError", "LocalProtocolError", "ProtocolError", "VirtrioError",
        "VirtrioTimeoutError",
    ],
    "virtrio.errors": [
        "AuthenticationError", "ChannelUnavailableError", "CommandError", "ConfigError",
        "ConnectError", "ConnectionLostError", "LocalProtocolError", "PermanentError",
        "ProtocolError", "UnsupportedVersionError", "VirtrioError", "VirtrioTimeoutError",
    ],
    "virtrio.channels": [
        "Address", "ServerStatistics", "StreamServer", "VMADDR_CID_ANY", "VMADDR_CID_HOST",
        "VMADDR_CID_LOCAL", "bound_address", "open_listeners", "open_stream", "parse_address",
        "serve_streams",
    ],
    "virtrio.channels.qmp": [
        "QCODES", "QemuVersion", "QmpClient", "QmpCommandError", "QmpCommands", "QmpError",
        "QmpEvent", "QmpGreeting", "QmpLocalProtocolError", "QmpProtocol", "QmpProtocolError",
        "QmpState", "VmStatus", "open_qmp", "parse_combo", "text_to_combos",
    ],
    "virtrio.channels.gdb": [
        "Ack", "ConsoleOutput", "Exited", "GdbClient", "GdbCommandError", "GdbError", "GdbEvent",
        "GdbLocalProtocolError", "GdbProtocol", "GdbProtocolError", "GdbUnsupportedError", "Nak",
        "Notification", "Packet", "PacketReader", "ProtocolState", "Register", "Reply",
        "ResumeRefused", "StopReply", "Stopped", "StubFeatures", "TargetDescription",
        "TargetDescriptionReader", "Terminated", "ThreadId", "checksum",
        "decode_payload", "encode_packet", "escape", "open_gdb", "parse_stop_reply",
        "parse_supported",
    ],
    "virtrio.channels.qga": [
        "ExecResult", "GuestAgentInfo", "QgaClient", "QgaCommandError", "QgaCommands",
        "QgaError", "QgaLocalProtocolError", "QgaProtocol", "QgaProtocolError", "open_qga",
    ],
    "virtrio.channels.libvirt": [
        "ChannelInfo", "DomainEvent", "DomainNotFoundError", "DomainSummary", "DomainXml",
        "DomainXmlError", "EventKind", "EventLoopStats", "GuestAgentUnavailableError",
        "LibvirtAuthenticationError", "LibvirtCallError", "LibvirtConnection", "LibvirtDomain",
        "LibvirtError", "LibvirtLocalError", "LibvirtQga", "LibvirtQmp", "LibvirtStream",
        "LibvirtUnsupportedError", "LibvirtUri", "LibvirtUriError",
        "SpiceInfo", "ensure_event_loop", "event_loop_stats", "open_connection",
        "parse_domain_xml", "parse_libvirt_uri", "run_blocking",
    ],
    "virtrio.channels.spice": [
        "ChannelType", "DEFAULT_CHANNELS", "DisplayChannel", "DisplayState", "InputsChannel",
        "LinkErr", "LinkState", "Linked", "MainChannel", "MainInit", "MainState", "PortChannel",
        "Rect", "SpiceChannel", "SpiceError", "SpiceLink", "SpiceLinkError",
        "SpiceLocalProtocolError", "SpicePermissionError", "SpiceProtocolError",
        "SpiceVersionError",
        "SpiceSession", "SpiceTransport", "Surface", "break_code", "combo_codes", "encode_png",
        "key_code", "open_channel", "open_domain_spice", "open_spice_session", "spice_addresses",
        "text_strokes",
    ],
    "virtrio.channels.virtio_serial": [
        "IncompleteReadError", "ReadBuffer", "ReadLimitError", "StreamReader", "VirtioSerialError",
        "discover_channels", "open_virtio_serial",
    ],
    "virtrio.channels.pty": [
        "Ack", "Attach", "BackpressureWarning", "ConnectionClosed", "Create", "CreateOptions",
        "Created",
        "DEFAULT_MAX_FRAME_SIZE", "Detach", "EVENT_TYPES", "Error", "ErrorCode", "Event", "Exit",
        "FrameDecoder", "FrameTooLargeError", "Input", "InvalidMessageError",
        "InvalidMsgpackError", "Kill", "Level", "List", "Message", "NEED_DATA", "NeedData", "Ok",
        "Output", "PtyClient", "PtyError", "PtyEvent", "PtyEvents", "PtyLocalProtocolError",
        "PtyProtocolError", "PtyRequestError",
        "REQUEST_TYPES", "Request", "Resize", "SessionInfo", "Sessions", "Signal",
        "TruncatedFrameError", "UnexpectedTypeError", "UnknownTypeError", "decode_payload",
        "default_socket_path", "encode", "encode_output", "open_pty_client",
    ],
    "virtrio.channels.yamux": [
        "DEFAULT_WINDOW", "Flag", "FrameType", "GoAwayCode", "MuxListener", "MuxSession",
        "MuxStream", "SessionLostError", "StreamResetError", "StreamState", "YamuxError",
        "YamuxLocalProtocolError", "YamuxProtocolError", "YamuxSession", "open_mux",
    ],
    "virtrio.channels.xtransfer": [
        "DEFAULT_MAX_MESSAGE_SIZE", "MAX_FRAME_SIZE", "NEED_DATA", "ConnectionClosed", "Message",
        "MessageDelivered", "NeedData", "PacketType", "XtransferChannel", "XtransferChecksumError",
        "XtransferConfig", "XtransferError", "XtransferFramingError", "XtransferLaneLostError",
        "XtransferMagicError", "XtransferMessageTooLargeError", "XtransferProtocol",
        "XtransferProtocolError", "XtransferStream", "XtransferTruncatedError",
        "XtransferVersionError", "encode_packet", "open_xtransfer",
    ],
    "virtrio.channels.messaging": [
        "DEFAULT_CLIENT_CID", "DEFAULT_PORT", "ClientConfig", "Compression", "Encryption",
        "HealthCheck", "HealthCheckError", "LengthPrefixDecoder", "LengthPrefixError",
        "LengthPrefixedChannel", "MessageChannel", "MessageCipher", "MessageClient",
        "MessageCompressor", "MessageConnection", "MessageServer", "MessagingError", "Middleware",
        "MiddlewareError", "Probe", "RateLimit", "ServerConfig", "TokenBucket", "Transport",
        "XtransportTransport", "YamuxTransport", "encode_length_prefixed", "with_xtransport",
        "with_yamux",
    ],
    "virtrio.primitives": [
        "Backoff", "ChannelState", "Connection", "Deadline", "DirectReads", "Executor", "Fanout",
        "IOV_MAX", "Mutex", "Pressure", "PressureLevel", "READS_WITHOUT_YIELD", "SpinPolicy",
        "StateChange", "SubscriberOverflowError", "Subscription",
        "SupervisedHandle", "Supervisor", "collapse_groups", "fresh_error", "is_transient",
        "open_service_nursery", "run_in_worker", "write_all",
    ],
    "virtrio.nurseries": [
        "BUILTIN_KINDS", "ENTRY_POINT_GROUP", "Backoff", "BuiltChannel", "ChannelContext",
        "ChannelKind", "ChannelSpec", "ChannelState", "Connection", "DuplicateKindError",
        "Fanout", "KindRegistry", "LineChannel", "Mark", "MarkExpiredError", "Match",
        "MuxOptions", "Pressure", "PressureLevel", "QgaOptions", "QmpOptions", "Recorder",
        "SerialConsoleOptions", "SpiceOptions", "StateChange", "SubscriberOverflowError",
        "Subscription", "SupervisedMux", "SupervisedQga", "SupervisedQmp", "Supervisor",
        "UnknownKindError", "VirtioSerialOptions", "Vm", "XtransportMux", "default_registry",
        "open_vm",
    ],
    "virtrio.nurseries.host": [
        "HostNursery", "HostPool", "HostQga", "HostQmp", "HostUnavailableError", "LibvirtUri",
        "LibvirtUriError", "open_host", "open_host_pool", "parse_libvirt_uri",
    ],
    "virtrio.nurseries.spice": ["SpiceManager", "SupervisedSpice", "open_spice_manager"],
    "virtrio.nurseries.messaging": [
        "MessagePool", "SupervisedConnection", "connect_supervised", "open_pool",
    ],
    "virtrio.engine": [
        "Engine", "EngineEvent", "EngineStatistics", "EventKind", "Fleet", "FleetError",
        "default_fleet", "load_fleet", "open_engine",
    ],
    "virtrio.engine.config": [
        "ChannelConfig", "Defaults", "Fleet", "FleetError", "FleetIssue", "HostConfig",
        "QemuConfig", "SpiceConfig", "SpiceVmConfig", "VmConfig", "default_fleet",
        "demo_channels", "dump_fleet", "fleet_data", "fleet_schema", "load_fleet", "parse_fleet",
    ],
    "virtrio.engine.guest": [
        "AGENT_PORT", "GuestBuildError", "GuestImage", "QemuLaunch", "QemuMachine", "QemuProcess",
        "build_guest", "find_guest", "guest_cache_dir", "open_qemu", "plan_launch",
        "require_guest",
    ],
    "virtrio.engine.pty": [
        "ENVIRONMENT", "EmulatorFactory", "PtyDaemon", "PtyDaemonConfig", "PtyDaemonStatistics",
        "PyteEmulator", "Session", "SessionError", "TerminalEmulator", "serve_pty_daemon",
    ],
    "virtrio.engine.scenario": [
        "DEMO_SCENARIO", "ENTRY_POINT_GROUP", "PythonScenario", "RunReport", "Scenario",
        "ScenarioContext", "ScenarioError", "Step", "StepFailed", "StepKind", "StepOutcome",
        "StepRecord", "StepRegistry", "VmResult", "default_steps", "demo_scenario",
        "load_scenario", "parse_scenario", "percentile", "report_json", "run_scenario",
        "step_statistics", "write_results",
    ],
    "virtrio.testing": ["PowerStateMachine", "power_state_machine", "run_power_machine"],
    "virtrio.testing.pytest_plugin": [
        "fresh_vm", "pytest_addoption", "pytest_configure", "pytest_generate_tests",
        "pytest_runtest_makereport", "pytest_unconfigure", "virtrio_engine", "vm", "vms",
    ],
    "virtrio.testing.strategies": [
        "MODIFIERS", "QmpSchema", "TYPEABLE", "byte_splits", "check_value", "key_combos",
        "qmp_arguments", "qmp_commands", "scenario_steps", "typeable_text",
    ],
    "virtrio.pty": [
        "BackpressureWarning", "Error", "Exit", "Level", "Output", "PtyClient", "PtyEvent",
        "PtyEvents", "PtyRequestError", "SessionInfo", "default_socket_path", "open_pty_client",
    ],
    "virtrio.engine.backends": [
        "Access", "Artifact", "BOARD_CONFIG_SCHEMA", "CONSOLE_HISTORY", "Backend",
        "BackendAdapter",
        "BackendCommandError", "BackendError", "BackendExitedError", "BackendInstance",
        "BackendStartError", "BackendStateError", "BackendType", "BackendUnavailableError",
        "BoardConfig", "BoardConfigError", "Breakpoint",
        "BreakpointKind", "Capabilities", "Capability", "ConsoleBuffer", "DebugInfo",
        "ENTRY_POINT_GROUP", "ExecLogParser", "FunctionInfo", "InstanceAdapter", "Interconnect",
        "IrqRoute", "MemoryRegion", "MemoryType", "MmioMapping", "NodeConfig", "Peripheral",
        "Processor", "ProgramFormat", "ProgramInfo", "QEMU_MACHINES", "QemuBackend",
        "QemuInstance", "QemuMachineModel", "QemuNodePlan", "QemuSettings", "RenodeBackend",
        "RenodeInstance", "ResourceLimitExceededError", "ResourceLimits", "RobotRemote",
        "SharedMemory", "SkyEyeBackend", "SkyEyeInstance", "StartOptions",
        "UnsupportedCapabilityError", "backend_names", "board_template", "cgroup_support", "lcov",
        "load_backend", "open_adapter", "parse_board", "parse_size", "plan_qemu_board",
        "plan_qemu_node", "remove_stale_cgroups", "renode_platform", "skyeye_config",
        "template_names",
    ],
    "virtrio.engine.server": [
        "MIGRATIONS", "ROUTES", "Principal", "ResourceCaps", "Role", "ServerState", "Store",
        "build_app",
        "open_server", "open_store", "serve",
    ],
}  # fmt: skip

#: Namespaces without an underscore that are not API, and why.
NOT_API = {
    "virtrio.engine.commands": "the CLI's subcommands (argparse plumbing; the CLI is the API)",
    "virtrio.engine.guest_files": "data files of the demo guest build",
}


def _namespaces() -> list[str]:
    import virtrio

    found = ["virtrio"]
    for info in pkgutil.walk_packages(virtrio.__path__, "virtrio."):
        parts = info.name.split(".")
        if any(part.startswith("_") for part in parts):
            continue
        if any(info.name == skip or info.name.startswith(skip + ".") for skip in NOT_API):
            continue
        found.append(info.name)
    return sorted(found)


def _public(module: types.ModuleType) -> list[str]:
    """What ``from module import *`` gives: ``__all__``, else every public attribute."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = _visible(module)
    return sorted(names)


def _visible(module: types.ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    )


def test_every_public_namespace_is_listed() -> None:
    """A new public module or package (or one that went away) fails here until it is listed."""
    assert _namespaces() == sorted(PUBLIC)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert _public(mod) == sorted(PUBLIC[module])
    # nothing public beside __all__: an import left visible is a name that appeared
    assert set(_visible(mod)) <= set(_public(mod))
    for name in _public(mod):
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
