"""What the stub says, as values: stop replies, console output, thread ids, its features."""

from __future__ import annotations

from binascii import a2b_hex
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from ._errors import GdbProtocolError

__all__ = [
    "ConsoleOutput",
    "Exited",
    "GdbEvent",
    "StopReply",
    "Stopped",
    "StubFeatures",
    "Terminated",
    "ThreadId",
    "decode_hex",
    "parse_stop_reply",
    "parse_supported",
    "parse_thread_list",
]

#: Stop reasons that carry a data address (``watch:ADDR;``).
WATCH_REASONS = frozenset({"watch", "rwatch", "awatch"})
_REASONS = WATCH_REASONS | {
    "swbreak",
    "hwbreak",
    "library",
    "replaylog",
    "fork",
    "vfork",
    "vforkdone",
    "exec",
    "create",
    "syscall_entry",
    "syscall_return",
}


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def decode_hex(text: bytes | str, what: str = "hex data") -> bytes:
    """Hex text as bytes.

    Raises:
        GdbProtocolError: the text is not an even number of hex digits.
    """
    try:
        # a2b_hex takes the bytes as they came (no str made first) and, unlike bytes.fromhex,
        # no spaces between the digits
        return a2b_hex(text)
    except ValueError:  # (binascii.Error; a str with non-ASCII characters)
        shown = text[:64]
        raise GdbProtocolError(f"{what} is not hex: {shown!r}") from None


def _hex_int(text: str, what: str) -> int:
    if text.startswith("-"):
        if text == "-1":
            return -1
    elif text and _HEX_DIGITS.issuperset(text):
        return int(text, 16)
    raise GdbProtocolError(f"{what} {text!r} is not a hex number")


@attrs.frozen
class ThreadId:
    """A thread id: ``tid`` alone, or ``pid`` and ``tid`` when the stub speaks multiprocess.
    ``-1`` means all, ``0`` any."""

    tid: int
    pid: int | None = None

    @classmethod
    def parse(cls, text: str) -> ThreadId:
        """Parse ``p1.2``, ``p1`` or ``2`` (hex; ``-1`` allowed).

        Raises:
            GdbProtocolError: the text is not a thread id.
        """
        if text.startswith("p"):
            pid, dot, tid = text[1:].partition(".")
            return cls(_hex_int(tid, "thread id") if dot else -1, _hex_int(pid, "process id"))
        return cls(_hex_int(text, "thread id"))

    def __str__(self) -> str:
        def part(n: int) -> str:
            return "-1" if n == -1 else f"{n:x}"

        if self.pid is None:
            return part(self.tid)
        return f"p{part(self.pid)}.{part(self.tid)}"


@attrs.frozen
class Stopped:
    """The target stopped (``T`` or ``S`` reply).

    Attributes:
        signal: the signal number (5 SIGTRAP for breakpoints and steps, 2 SIGINT after an
            interrupt).
        thread: the thread that stopped, when the stub says.
        reason: ``"swbreak"``, ``"hwbreak"``, ``"watch"``, ``"rwatch"``, ``"awatch"``, ... or
            None (QEMU 7.2 names only watchpoints).
        address: the data address of a watchpoint stop.
        registers: register values the stub sent along, by register number (raw target bytes).
        info: every other ``name:value`` pair of the reply.
    """

    signal: int
    thread: ThreadId | None = None
    reason: str | None = None
    address: int | None = None
    registers: Mapping[int, bytes] = attrs.field(factory=dict)
    info: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Exited:
    """The process exited (``W`` reply) with ``status``."""

    status: int
    pid: int | None = None


@attrs.frozen
class Terminated:
    """The process was killed by ``signal`` (``X`` reply)."""

    signal: int
    pid: int | None = None


@attrs.frozen
class ConsoleOutput:
    """Text the stub sent for the console (``O`` packets: ``monitor`` output, semihosting)."""

    data: bytes


StopReply = Stopped | Exited | Terminated
GdbEvent = Stopped | Exited | Terminated | ConsoleOutput


def _pid_suffix(rest: str) -> int | None:
    if not rest:
        return None
    if not rest.startswith(";process:"):
        raise GdbProtocolError(f"unexpected text after an exit status: {rest!r}")
    return _hex_int(rest[len(";process:") :], "process id")


#: Stop replies parsed before that hold no registers and no other items (QEMU's every stop is
#: one of a few such): their value, immutable (frozen, with read-only empty mappings), again.
_SEEN_STOPS: dict[bytes, StopReply] = {}
_SEEN_STOPS_MAX = 64
_NOTHING: Mapping[Any, Any] = MappingProxyType({})


def parse_stop_reply(payload: bytes) -> StopReply:
    """Parse a stop reply (``T``, ``S``, ``W`` or ``X``).

    Raises:
        GdbProtocolError: the payload is not a stop reply.
    """
    stop = _SEEN_STOPS.get(payload)
    if stop is not None:
        return stop
    stop = _parse_stop_reply(payload)
    if isinstance(stop, Stopped):
        if stop.registers or stop.info:
            return stop
        stop = attrs.evolve(stop, registers=_NOTHING, info=_NOTHING)
    if len(_SEEN_STOPS) >= _SEEN_STOPS_MAX:
        _SEEN_STOPS.clear()
    _SEEN_STOPS[payload] = stop
    return stop


def _parse_stop_reply(payload: bytes) -> StopReply:
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise GdbProtocolError(f"stop reply is not ASCII: {payload[:64]!r}") from None
    kind = text[:1]
    if kind in ("S", "T") and len(text) >= 3:
        signal = _hex_int(text[1:3], "signal")
        if kind == "S":
            if len(text) != 3:
                raise GdbProtocolError(f"unexpected text after an S stop reply: {text!r}")
            return Stopped(signal)
        return _parse_t(signal, text[3:])
    if kind in ("W", "X") and len(text) >= 2:
        number, _, rest = text[1:].partition(";")
        pid = _pid_suffix(";" + rest if rest else "")
        value = _hex_int(number, "exit status" if kind == "W" else "signal")
        return Exited(value, pid) if kind == "W" else Terminated(value, pid)
    raise GdbProtocolError(f"not a stop reply: {text[:64]!r}")


def _parse_t(signal: int, body: str) -> Stopped:
    thread: ThreadId | None = None
    reason: str | None = None
    address: int | None = None
    registers: dict[int, bytes] = {}
    info: dict[str, str] = {}
    for item in body.split(";"):
        if not item:
            continue
        name, colon, value = item.partition(":")
        if not colon:
            raise GdbProtocolError(f"stop reply item {item!r} has no ':'")
        if name == "thread":
            thread = ThreadId.parse(value)
        elif name in _REASONS:
            reason = name
            if name in WATCH_REASONS:
                address = _hex_int(value, "watchpoint address")
            elif value:
                info[name] = value
        elif name and _HEX_DIGITS.issuperset(name):
            registers[int(name, 16)] = decode_hex(value, f"register {name} in a stop reply")
        else:
            info[name] = value
    return Stopped(signal, thread, reason, address, registers, info)


@attrs.frozen
class StubFeatures:
    """What the stub said in its ``qSupported`` reply.

    Attributes:
        packet_size: the largest packet it accepts (``PacketSize``, in bytes).
        features: every feature: ``True`` (``name+``), ``False`` (``name-``), or the value of
            ``name=value``.
    """

    packet_size: int
    features: Mapping[str, bool | str] = attrs.field(factory=dict)

    def supports(self, name: str) -> bool:
        """Whether the stub announced ``name+`` (or a value for ``name``)."""
        value = self.features.get(name, False)
        return value is not False


#: PacketSize assumed when the stub does not say (GDB's own default is 400 bytes).
DEFAULT_PACKET_SIZE = 400


def parse_supported(payload: bytes) -> StubFeatures:
    """Parse a ``qSupported`` reply.

    Raises:
        GdbProtocolError: an item is malformed, or PacketSize is not a hex number.
    """
    features: dict[str, bool | str] = {}
    text = payload.decode("ascii", "replace")
    for item in text.split(";"):
        if not item:
            continue
        if "=" in item:
            name, _, value = item.partition("=")
            features[name] = value
        elif item[-1] in "+-?":
            features[item[:-1]] = item[-1] == "+"
        else:
            raise GdbProtocolError(f"qSupported item {item!r} is not name+, name- or name=value")
    size = features.get("PacketSize")
    packet_size = DEFAULT_PACKET_SIZE
    if isinstance(size, str):
        packet_size = _hex_int(size, "PacketSize")
        if packet_size < 16:
            raise GdbProtocolError(f"PacketSize {size!r} is too small")
    return StubFeatures(packet_size, features)


def parse_thread_list(payload: bytes) -> tuple[list[ThreadId], bool]:
    """Parse a ``qfThreadInfo``/``qsThreadInfo`` reply: the threads, and whether it was the
    last part (``l``).

    Raises:
        GdbProtocolError: the reply is neither ``m...`` nor ``l``.
    """
    text = payload.decode("ascii", "replace")
    if text.startswith("l"):
        rest = text[1:]
        return ([ThreadId.parse(t) for t in rest.split(",")] if rest else []), True
    if text.startswith("m") and len(text) > 1:
        return [ThreadId.parse(t) for t in text[1:].split(",")], False
    raise GdbProtocolError(f"not a thread list: {text[:64]!r}")
