"""Breakpoints, watchpoints and running the target: the calls of
:class:`~virtrio.channels.gdb.GdbClient` that resume it, and what they do first.

QEMU's stub reports a breakpoint at the PC again without executing anything, and on ARM,
AArch64 and MIPS a watchpoint stops the target before the access it watches; so, as GDB does,
resuming first steps one instruction with those lifted (``_step_off``).
"""

from __future__ import annotations

from ._commands import GdbCommands, WatchAccess
from ._memory import expect_ok as _ok
from ._replies import WATCH_REASONS, Stopped, StopReply, ThreadId

__all__ = ["GdbExecution"]

_WATCH_TYPES = {"write": 2, "read": 3, "access": 4}


class GdbExecution(GdbCommands):
    """Breakpoints, watchpoints, continue and step, mixed into the client."""

    # --- breakpoints and watchpoints ------------------------------------------------------

    def default_breakpoint_kind(self) -> int:
        """The breakpoint kind (instruction size) GDB would use on this architecture: 2 for
        Thumb (M-profile ARM), 4 for ARM/AArch64/RISC-V, 1 elsewhere (x86)."""
        target = self.target
        if self._kind_of[0] is target:
            return self._kind_of[1]
        arch = target.architecture or ""
        if arch.startswith("arm"):
            kind = 2 if any("m-profile" in f for f in target.features) else 4
        elif arch.startswith(("aarch64", "riscv", "mips", "powerpc", "sparc")):
            kind = 4
        else:
            kind = 1
        self._kind_of = (target, kind)
        return kind

    async def _z(
        self, insert: bool, kind_type: int, address: int, kind: int, timeout: float | None
    ) -> None:
        command = b"%s%d,%x,%x" % (b"Z" if insert else b"z", kind_type, address, kind)
        _ok(await self._exchange(command, timeout), command)
        table = self._breakpoints if kind_type < 2 else self._watchpoints
        if insert:
            table.add((kind_type, address, kind))
        else:
            table.discard((kind_type, address, kind))

    async def set_breakpoint(
        self,
        address: int,
        *,
        kind: int | None = None,
        hardware: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Insert a breakpoint at ``address`` (``Z0``, or ``Z1`` with ``hardware=True``).
        ``kind`` is the RSP's breakpoint kind (the instruction size; by default
        :meth:`default_breakpoint_kind`).

        Raises:
            GdbUnsupportedError: the stub has no such breakpoints.
            GdbCommandError: the stub refused.
        """
        await self._z(
            True, 1 if hardware else 0, address, kind or self.default_breakpoint_kind(), timeout
        )

    async def remove_breakpoint(
        self,
        address: int,
        *,
        kind: int | None = None,
        hardware: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Remove a breakpoint set by :meth:`set_breakpoint` (same arguments)."""
        await self._z(
            False, 1 if hardware else 0, address, kind or self.default_breakpoint_kind(), timeout
        )

    async def set_watchpoint(
        self,
        address: int,
        length: int,
        *,
        access: WatchAccess = "write",
        timeout: float | None = None,
    ) -> None:
        """Watch ``length`` bytes at ``address`` for writes (``Z2``), reads (``Z3``) or both
        (``Z4``); a hit stops the target with reason ``watch``/``rwatch``/``awatch``.

        Raises:
            ValueError: ``access`` is none of the three.
            GdbUnsupportedError: the stub has no such watchpoints.
        """
        await self._z(True, self._watch_type(access), address, length, timeout)

    async def remove_watchpoint(
        self,
        address: int,
        length: int,
        *,
        access: WatchAccess = "write",
        timeout: float | None = None,
    ) -> None:
        """Remove a watchpoint set by :meth:`set_watchpoint` (same arguments)."""
        await self._z(False, self._watch_type(access), address, length, timeout)

    @staticmethod
    def _watch_type(access: str) -> int:
        try:
            return _WATCH_TYPES[access]
        except KeyError:
            raise ValueError(
                f"access must be 'write', 'read' or 'access', not {access!r}"
            ) from None

    # --- execution -------------------------------------------------------------------------

    def _watchpoints_stop_before_access(self) -> bool:
        # GDB's "non-steppable watchpoints": on ARM, AArch64 and MIPS a watchpoint stops the
        # target before the access, so resuming with it inserted would hit it again at once
        return (self.target.architecture or "").startswith(("arm", "aarch64", "mips"))

    def _step_packet(self, thread: ThreadId | None) -> bytes:
        if "s" in self.vcont_actions:
            target = thread or self._stop_thread()
            return b"vCont;s" + (b":%s" % str(target).encode() if target else b"")
        return b"s"

    async def _step_off(self, thread: ThreadId | None, timeout: float | None) -> StopReply | None:
        """Step one instruction with the breakpoints at the PC (and, where watchpoints stop
        before the access, the watchpoints after a watchpoint stop) lifted, as GDB does: the
        stub itself would report them again without moving. Returns the step's stop, or None
        when there was nothing to step off."""
        lifted: list[tuple[int, int, int]] = []
        stop = self.last_stop
        if (
            self._watchpoints
            and isinstance(stop, Stopped)
            and stop.reason in WATCH_REASONS
            and self._watchpoints_stop_before_access()
        ):
            lifted += self._watchpoints
        pc_reg = self._pc_register()
        if self._breakpoints and pc_reg is not None:
            if self._pc is None:
                self._pc = await self.read_register(pc_reg.name, timeout=timeout)
            lifted += [b for b in self._breakpoints if b[1] == self._pc]
        if not lifted:
            return None
        await self._insert_all(False, lifted, timeout)
        try:
            await self._resume(self._step_packet(thread), quiet=True)
            return await self.wait_stop(timeout)
        finally:
            if self.last_stop is not None and not self._running():
                await self._insert_all(True, lifted, timeout)

    async def _insert_all(
        self, insert: bool, points: list[tuple[int, int, int]], timeout: float | None
    ) -> None:
        for z in points:
            await self._z(insert, *z, timeout)

    async def _step_off_first(
        self, thread: ThreadId | None, timeout: float | None, *, plain_step_ends: bool
    ) -> StopReply | None:
        """Step off what the target stopped at (:meth:`_step_off`); when that step's stop
        ends the call, publish and return it: for :meth:`step` any stop, for
        :meth:`continue_` one that is not a plain step (it stopped somewhere that matters)."""
        stop = await self._step_off(thread, timeout)
        if stop is None or (not plain_step_ends and self._plain_step(stop)):
            return None
        self._publish(stop)
        return stop

    def _running(self) -> bool:
        raise NotImplementedError

    @staticmethod
    def _plain_step(stop: StopReply) -> bool:
        return isinstance(stop, Stopped) and stop.signal == 5 and stop.reason is None

    async def continue_(
        self, *, thread: ThreadId | None = None, timeout: float | None = None
    ) -> None:
        """Resume the target (``vCont;c`` or ``c``) and return once the request is sent; the
        stop comes later: :meth:`wait_stop`, or the :meth:`events` listener. Stopped at one of
        our breakpoints, it first steps off it (as GDB does).

        Raises:
            GdbLocalProtocolError: the target already runs.
        """
        if await self._step_off_first(thread, timeout, plain_step_ends=False) is not None:
            return  # the step itself stopped somewhere that matters: stay there
        if "c" in self.vcont_actions:
            await self._resume(b"vCont;c" + (b":%s" % str(thread).encode() if thread else b""))
        else:
            await self._resume(b"c")

    async def step(
        self, *, thread: ThreadId | None = None, timeout: float | None = None
    ) -> StopReply:
        """Execute one instruction (``vCont;s`` or ``s``) and return the stop reply.

        Raises:
            GdbLocalProtocolError: the target runs.
            VirtrioTimeoutError: no stop within ``timeout``.
        """
        stop = await self._step_off_first(thread, timeout, plain_step_ends=True)
        if stop is not None:
            return stop
        await self._resume(self._step_packet(thread))
        return await self.wait_stop(timeout)

    def _stop_thread(self) -> ThreadId | None:
        raise NotImplementedError
