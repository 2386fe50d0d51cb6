"""The data every backend speaks: capabilities, programs, breakpoints, snapshots, artefacts,
and the errors of the backend layer."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path

import attrs

from virtrio.errors import ConfigError, LocalProtocolError, VirtrioError

__all__ = [
    "Artifact",
    "BackendCommandError",
    "BackendError",
    "BackendExitedError",
    "BackendStartError",
    "BackendStateError",
    "BackendUnavailableError",
    "BackendType",
    "Breakpoint",
    "BreakpointKind",
    "Capabilities",
    "Capability",
    "ProgramFormat",
    "ProgramInfo",
    "StartOptions",
    "UnsupportedCapabilityError",
]


class BackendError(VirtrioError):
    """A backend could not do what was asked; the families below say why
    (:class:`BackendUnavailableError`, :class:`BackendStartError`,
    :class:`BackendExitedError`, :class:`BackendCommandError`, :class:`BackendStateError`,
    :class:`UnsupportedCapabilityError`).

    Attributes:
        backend: the backend's name (``qemu``, ``renode``, ``skyeye``).
    """

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend


class BackendUnavailableError(BackendError, ConfigError):
    """The emulator or a tool it needs is not installed or cannot be executed (the message
    says what to install). A :class:`~virtrio.errors.ConfigError` too: retrying will not help
    until the machine is set up."""


class BackendStartError(BackendError):
    """The emulator was started but never became ready: it exited first, or did not announce
    itself (or answer on its sockets) in time. The message ends with its output."""


class BackendExitedError(BackendError):
    """The emulator exited under a running instance: the call found it gone (its status and
    the end of its log in the message)."""


class BackendCommandError(BackendError):
    """The emulator (or its tool) answered a command with an error: a Renode keyword failed,
    a snapshot job or migration failed, ``qemu-img`` failed. The message carries its text."""


class BackendStateError(BackendError, LocalProtocolError):
    """The instance cannot do that in its current state (powered off, or no program started
    yet): nothing was sent to the emulator."""


class BackendType(enum.StrEnum):
    """The emulators virtrio has adapters for (a third party's backend may use any name)."""

    QEMU = "qemu"
    RENODE = "renode"
    SKYEYE = "skyeye"


class Capability(enum.StrEnum):
    """One thing a backend instance may be able to do."""

    POWER = "power"  #: power on, off and reset
    PAUSE = "pause"  #: pause and resume
    PROGRAM_ELF = "program.elf"  #: load an ELF
    PROGRAM_RAW = "program.raw"  #: load a raw image at an address
    START_AT_ENTRY = "program.entry"  #: start at a given entry point instead of from reset
    BREAKPOINTS = "debug.breakpoints"
    WATCHPOINTS = "debug.watchpoints"
    REGISTERS = "debug.registers"
    MEMORY = "debug.memory"
    STEP = "debug.step"  #: step, continue and wait for a stop
    SNAPSHOTS = "snapshots"
    COVERAGE = "coverage"
    TRACE = "trace"
    CONSOLE = "console"  #: the first UART's output
    DISPLAY = "display"  #: a screen to take screenshots of (PNG)


class UnsupportedCapabilityError(BackendStateError):
    """A call needs a capability this backend or board does not have.

    Attributes:
        capability: the missing capability.
        reason: why it is missing (from :attr:`Capabilities.notes`).
    """

    def __init__(self, capability: Capability, *, backend: str, doing: str, reason: str) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(
            f"{doing} needs capability {capability.value!r}, which this instance lacks{why}",
            backend=backend,
        )
        self.capability = capability
        self.reason = reason


@attrs.frozen
class Capabilities:
    """What a backend (for one board) can do, so a caller never finds out by failing.

    ``notes`` says why a capability is missing, or a caveat about one that is present.
    ``tested`` is False for adapters that were only ever run against fakes of their program.
    """

    backend: str
    supported: frozenset[Capability]
    notes: Mapping[Capability, str] = attrs.field(factory=dict)
    tested: bool = True
    summary: str = ""

    def supports(self, capability: Capability) -> bool:
        """Whether ``capability`` is available."""
        return capability in self.supported

    def require(self, capability: Capability, *, doing: str) -> None:
        """Raise :class:`UnsupportedCapabilityError` unless ``capability`` is available."""
        if capability not in self.supported:
            raise UnsupportedCapabilityError(
                capability,
                backend=self.backend,
                doing=doing,
                reason=self.notes.get(capability, ""),
            )

    def without(self, capability: Capability, reason: str) -> Capabilities:
        """These capabilities less ``capability``, with ``reason`` recorded."""
        return attrs.evolve(
            self,
            supported=self.supported - {capability},
            notes={**self.notes, capability: reason},
        )

    def to_json(self) -> dict[str, object]:
        """A JSON-friendly form (for an API's capabilities endpoint)."""
        return {
            "backend": self.backend,
            "supported": sorted(c.value for c in self.supported),
            "notes": {c.value: n for c, n in sorted(self.notes.items())},
            "tested": self.tested,
            "summary": self.summary,
        }


class ProgramFormat(enum.StrEnum):
    """How a program image is laid out."""

    ELF = "elf"  #: an ELF executable: segments at their addresses, symbols, debug info
    RAW = "raw"  #: a flat binary loaded at ``load_address``


def _check_raw(instance: ProgramInfo, attribute: object, value: int | None) -> None:
    if instance.format is ProgramFormat.RAW and value is None:
        raise ConfigError("a raw program needs a load_address")
    if value is not None and value < 0:
        raise ConfigError(f"load_address must be >= 0, got {value:#x}")


@attrs.frozen
class ProgramInfo:
    """A program uploaded to an instance (its file lives in the instance's work directory)."""

    program_id: str
    path: Path
    format: ProgramFormat = ProgramFormat.ELF
    load_address: int | None = attrs.field(default=None, validator=_check_raw)
    name: str = ""


@attrs.frozen
class StartOptions:
    """How to start a program: from reset (the default) or at ``entry``; ``halted`` leaves the
    CPU stopped before its first instruction (for a debugger)."""

    entry: int | None = None
    halted: bool = False


class BreakpointKind(enum.StrEnum):
    """Breakpoint and watchpoint kinds (GDB's Z0-Z4)."""

    SOFTWARE = "software"
    HARDWARE = "hardware"
    WRITE = "write"  #: a watchpoint on writes
    READ = "read"
    ACCESS = "access"


@attrs.frozen
class Breakpoint:
    """Where to stop: an ``address``, or a ``symbol`` of the running ELF (a function's entry).

    ``length`` is the watched size for watchpoints.
    """

    address: int | None = None
    symbol: str | None = None
    kind: BreakpointKind = BreakpointKind.SOFTWARE
    length: int = 4

    def __attrs_post_init__(self) -> None:
        if (self.address is None) == (self.symbol is None):
            raise ConfigError("a breakpoint needs exactly one of address= and symbol=")
        if self.length <= 0:
            raise ConfigError(f"breakpoint length must be > 0, got {self.length}")

    @property
    def is_watchpoint(self) -> bool:
        """Whether this stops on a data access rather than on execution."""
        return self.kind in (BreakpointKind.WRITE, BreakpointKind.READ, BreakpointKind.ACCESS)


@attrs.frozen
class Artifact:
    """A file an instance produced (coverage, trace), with its media type."""

    path: Path
    media_type: str
    description: str = ""
