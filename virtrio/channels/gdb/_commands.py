"""The typed calls of :class:`~virtrio.channels.gdb.GdbClient`: the handshake, registers,
memory, threads and the rest, each one or a few RSP exchanges (resuming is in ``_execution``).

Kept apart from the connection (``_client.py``) so each reads on its own; everything here goes
through ``request`` (one packet, its reply) and ``_resume`` (a packet answered by a stop).
"""

from __future__ import annotations

from binascii import a2b_hex
from typing import Literal

from ._errors import GdbLocalProtocolError, GdbProtocolError
from ._memory import GdbMemory, check_reply as _check, expect_ok as _ok
from ._replies import (
    GdbEvent,
    StopReply,
    StubFeatures,
    ThreadId,
    decode_hex,
    parse_stop_reply,
    parse_supported,
    parse_thread_list,
)
from ._target import Byteorder, Register, TargetDescription, TargetDescriptionReader

__all__ = ["GdbCommands", "WatchAccess"]

WatchAccess = Literal["write", "read", "access"]

#: What we tell the stub we understand (GDB 13 sends the same list).
_OUR_FEATURES = b"qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;no-resumed+"


def _hex_register(text: bytes, reg: Register, byteorder: Byteorder) -> int | None:
    """A register's value from its hex (None when the stub says ``xx``: unavailable)."""
    if text[:1] in (b"x", b"X"):
        return None
    return int.from_bytes(decode_hex(text, f"register {reg.name}"), byteorder)


class GdbCommands(GdbMemory):
    """The typed calls, mixed into the client (memory's are in ``_memory``)."""

    def __init__(self, byteorder: Byteorder | None) -> None:
        self._byteorder = byteorder
        #: What the stub announced in ``qSupported``.
        self.features = StubFeatures(400)
        #: The target description: architecture and registers.
        self.target = TargetDescription(None, ())
        #: The ``vCont`` actions the stub supports (``{"c", "s", ...}``), empty without vCont.
        self.vcont_actions: frozenset[str] = frozenset()
        self._pipeline = False
        self._binary_read: bool | None = None  # x: unknown until tried
        self._binary_write: bool | None = None
        self._p_packet = True
        self._P_packet = True
        # what is inserted, to step off it before resuming: (Z type, address, kind or length)
        self._breakpoints: set[tuple[int, int, int]] = set()
        self._watchpoints: set[tuple[int, int, int]] = set()
        self._pc: int | None = None  # the program counter at this stop, once read
        self._pc_of: tuple[TargetDescription | None, Register | None] = (None, None)
        self._kind_of: tuple[TargetDescription | None, int] = (None, 1)  # breakpoint kind

    async def _request_output(self, payload: bytes, timeout: float | None) -> tuple[bytes, bytes]:
        raise NotImplementedError

    async def _resume(self, payload: bytes, *, quiet: bool = False) -> None:
        raise NotImplementedError

    def _publish(self, event: GdbEvent) -> None:
        raise NotImplementedError

    @property
    def last_stop(self) -> StopReply | None:
        raise NotImplementedError

    def _stopped_since_resume(self) -> None:
        self._pc = None

    async def wait_stop(self, timeout: float | None = None) -> StopReply:
        raise NotImplementedError

    async def _initial_stop(self, timeout: float | None) -> None:
        raise NotImplementedError

    # --- handshake -------------------------------------------------------------------------

    async def _handshake(self) -> None:
        """qSupported, no-ack mode if offered, vCont?, the target description, ``?``."""
        self.features = parse_supported(_check(await self.request(_OUR_FEATURES), b"qSupported"))
        if self.features.supports("QStartNoAckMode"):
            reply = await self.request(b"QStartNoAckMode")
            if reply == b"OK":
                self._end_ack_mode()
        reply = await self.request(b"vCont?")
        if reply.startswith(b"vCont"):
            actions = reply.decode("ascii", "replace").split(";")[1:]
            self.vcont_actions = frozenset(a for a in actions if a)
        if self.features.supports("qXfer:features:read"):
            self.target = await self._read_target_description()
        await self._initial_stop(None)

    def _end_ack_mode(self) -> None:
        raise NotImplementedError

    async def _read_target_description(self) -> TargetDescription:
        reader = TargetDescriptionReader(byteorder=self._byteorder)
        while (annex := reader.next_annex()) is not None:
            reader.add(annex, await self.read_xfer("features", annex))
        return reader.build()

    async def read_xfer(self, obj: str, annex: str, *, timeout: float | None = None) -> bytes:
        """The whole of ``qXfer:OBJ:read:ANNEX`` (``features``/``target.xml``, ...), read in
        PacketSize pieces.

        Raises:
            GdbCommandError: the stub refused it (``E NN``), or does not support it.
        """
        out = bytearray()
        chunk = max(16, self.features.packet_size - 16)
        while True:
            command = f"qXfer:{obj}:read:{annex}:{len(out):x},{chunk:x}".encode()
            reply = _check(await self.request(command, timeout=timeout), command)
            kind, data = reply[:1], reply[1:]
            if kind not in (b"m", b"l"):
                raise GdbProtocolError(
                    f"{command!r}: reply {reply[:32]!r} is neither m... nor l..."
                )
            out += data
            if kind == b"l" or not data:
                return bytes(out)

    # --- registers -------------------------------------------------------------------------

    def _register(self, name: str) -> Register:
        if not self.target.registers:
            raise GdbLocalProtocolError("the stub gave no target description: no register names")
        try:
            return self.target.register(name)
        except KeyError as exc:
            raise GdbLocalProtocolError(str(exc.args[0])) from None

    def _pc_register(self) -> Register | None:
        target = self.target
        if self._pc_of[0] is target:
            return self._pc_of[1]
        regs = target.registers_by_name
        found = next((regs[name] for name in ("pc", "rip", "eip") if name in regs), None)
        if found is None:
            found = next((r for r in target.registers if r.type == "code_ptr"), None)
        self._pc_of = (target, found)
        return found

    async def _read_g(self, timeout: float | None) -> bytes:
        return _check(await self.request(b"g", timeout=timeout), b"g")

    async def read_registers(self, *, timeout: float | None = None) -> dict[str, int]:
        """Every available register, by the target description's names: those of the ``g``
        packet, then the rest one by one (``p``).

        Raises:
            GdbCommandError: the stub refused.
            GdbLocalProtocolError: the target runs, or the stub gave no target description.
        """
        if not self.target.registers:
            raise GdbLocalProtocolError("the stub gave no target description: no register names")
        text, values = self._decode_g(await self._exchange(b"g", timeout))
        target = self.target
        if len(values) < len(target.registers):  # some g did not carry or decode
            order = target.byteorder
            covered = len(text) // 2
            for reg in target.registers[len(values) :]:
                end = reg.offset + reg.size
                if end <= covered:
                    value = _hex_register(text[reg.offset * 2 : end * 2], reg, order)
                elif self._p_packet:
                    value = await self._read_p(reg, timeout)
                else:
                    continue
                if value is not None:
                    values[reg.name] = value
        pc_reg = self._pc_of[1] if self._pc_of[0] is target else self._pc_register()
        if pc_reg is not None:
            self._pc = values.get(pc_reg.name)
        return values

    def _decode_g(self, reply: bytes) -> tuple[bytes, dict[str, int]]:
        if reply:  # hex, the usual case, is never an error reply (E NN is three characters)
            try:
                data = a2b_hex(reply)
            except ValueError:
                pass
            else:
                return reply, self.target.decode_registers(data)
        text = _check(reply, b"g")
        if 0x78 in text or 0x58 in text:  # x or X: some unavailable, one by one
            return text, {}
        raise GdbProtocolError(f"g reply is not hex: {text[:64]!r}")

    async def _read_p(self, reg: Register, timeout: float | None) -> int | None:
        command = b"p%x" % reg.regnum
        reply = await self._exchange(command, timeout)
        if not reply:
            self._p_packet = False
            return None
        if reply[:1] == b"E" and len(reply) == 3:
            return None  # the stub cannot read this one (gdb shows it as <unavailable>)
        return _hex_register(reply, reg, self.target.byteorder)

    async def read_register(self, name: str, *, timeout: float | None = None) -> int:
        """One register's value.

        Raises:
            GdbLocalProtocolError: no such register in the target description, or it is
                unavailable.
            GdbCommandError: the stub refused.
        """
        reg = self._register(name)
        value: int | None = None
        if self._p_packet:
            command = b"p%x" % reg.regnum
            reply = await self._exchange(command, timeout)
            if reply:
                value = _hex_register(_check(reply, command), reg, self.target.byteorder)
            else:
                self._p_packet = False
        if not self._p_packet:
            text = await self._read_g(timeout)
            if (reg.offset + reg.size) * 2 > len(text):
                raise GdbLocalProtocolError(f"register {name} is not in the g packet")
            start = reg.offset * 2
            value = _hex_register(text[start : start + reg.size * 2], reg, self.target.byteorder)
        if value is None:
            raise GdbLocalProtocolError(f"register {name} is unavailable")
        if reg is self._pc_register():
            self._pc = value
        return value

    async def write_register(self, name: str, value: int, *, timeout: float | None = None) -> None:
        """Set one register (``P``; read-modify-write of ``g``/``G`` where P is missing).

        Raises:
            GdbLocalProtocolError: no such register.
            ValueError: the value does not fit.
            GdbCommandError: the stub refused.
        """
        reg = self._register(name)
        raw = self.target.encode_value(reg, value)
        self._pc = None
        if self._P_packet:
            command = b"P%x=%s" % (reg.regnum, raw.hex().encode())
            reply = await self.request(command, timeout=timeout)
            if reply:
                _ok(reply, command)
                return
            self._P_packet = False
        text = bytearray(await self._read_g(timeout))
        if (reg.offset + reg.size) * 2 > len(text):
            raise GdbLocalProtocolError(f"register {name} is not in the g packet and P is missing")
        text[reg.offset * 2 : (reg.offset + reg.size) * 2] = raw.hex().encode()
        _ok(await self.request(b"G" + bytes(text), timeout=timeout), b"G")

    # --- threads and the rest --------------------------------------------------------------

    async def threads(self, *, timeout: float | None = None) -> list[ThreadId]:
        """The target's threads (``qfThreadInfo``/``qsThreadInfo``; a CPU each on QEMU)."""
        found: list[ThreadId] = []
        command = b"qfThreadInfo"
        while True:
            part, last = parse_thread_list(
                _check(await self.request(command, timeout=timeout), command)
            )
            found += part
            if last or not part:
                return found
            command = b"qsThreadInfo"

    async def select_thread(
        self, thread: ThreadId, *, operation: Literal["g", "c"] = "g", timeout: float | None = None
    ) -> None:
        """Make ``thread`` the one later register and memory calls (``Hg``) or ``c``/``s``
        (``Hc``) apply to."""
        command = b"H%s%s" % (operation.encode(), str(thread).encode())
        _ok(await self.request(command, timeout=timeout), command)

    async def query_stop(self, *, timeout: float | None = None) -> StopReply:
        """Ask the stub why the target is stopped (``?``)."""
        return parse_stop_reply(_check(await self.request(b"?", timeout=timeout), b"?"))

    async def monitor(self, command: str, *, timeout: float | None = None) -> str:
        """Run a monitor command (``qRcmd``; QEMU's are its HMP commands) and return its output.

        Raises:
            GdbCommandError: the stub refused it.
        """
        payload = b"qRcmd," + command.encode().hex().encode()
        reply, output = await self._request_output(payload, timeout)
        if reply != b"OK":
            if reply[:1] != b"E" and reply:
                output += decode_hex(reply, "qRcmd reply")
            else:
                _check(reply, payload)
        return output.decode("utf-8", "replace")

    async def detach(self, *, timeout: float | None = None) -> None:
        """Detach (``D``): the stub removes breakpoints and lets the target run on."""
        stop = await self.query_stop(timeout=timeout)
        pid = getattr(getattr(stop, "thread", None), "pid", None)
        command = b"D;%x" % pid if self.features.supports("multiprocess") and pid else b"D"
        _ok(await self.request(command, timeout=timeout), command)
