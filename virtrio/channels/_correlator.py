"""Requests correlated to replies by id over one stream: :class:`Correlator`, shared by the
JSON RPC clients (QMP, the guest agent) and the PTY client.

Each request gets its own slot keyed by its id, so any number of tasks can call at once with no
lock around a round trip: only a message's own bytes are written as one unit. The protocol's
reader task (the one task that reads the stream) calls :meth:`Correlator.complete` with each
reply, and :meth:`Correlator.lose` when the connection ends: every pending call then fails at
once with :class:`~virtrio.errors.ConnectionLostError`.

This is the hot path of every call, so a call costs one pass through the scheduler (its wait
for the reply) and little else:

* a waiting call parks its task directly, with no event object per call;
* on a plain socket (:class:`trio.SocketStream`) a message is written, and the reader reads,
  straight from the file descriptor: Trio's socket methods pass through the scheduler after
  every successful send and receive, a round of the run loop each on a small request and its
  reply;
* when the reader runs :meth:`Correlator.read_all` on such a socket, it keeps the calls'
  deadlines too: one cancel scope of its own, set to the earliest deadline, stands for a cancel
  scope per call (entering and leaving one costs more than the rest of a call's Python code).
  A call whose send cannot finish at once, or on any other stream, has its own scope.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import trio

from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import DirectReads

__all__ = ["Correlator"]

log = logging.getLogger(__name__)

R = TypeVar("R")


class _Slot(Generic[R]):
    """One pending call: its reply once it came, and its task while it waits for one."""

    __slots__ = ("deadline", "done", "reply", "sent", "task", "timed_out")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = False
        self.timed_out = False
        self.reply: R | None = None
        self.sent = False
        self.task: trio.lowlevel.Task | None = None

    def finish(self, reply: R | None) -> None:
        self.done = True
        self.reply = reply
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        self.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._abort)

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self.task = None  # cancelled from outside: no one to wake any more
        return trio.lowlevel.Abort.SUCCEEDED


class Correlator(Generic[R]):
    """Pending requests on ``stream`` and why the connection ended.

    Args:
        stream: the connected stream, written by :meth:`send`; closed by :meth:`aclose`.
        name: the protocol's name for messages (``"QMP"``).
        address: the peer's address for messages and errors.
    """

    def __init__(self, stream: trio.abc.Stream, *, name: str, address: str) -> None:
        self.stream = stream
        self.name = name
        self.address = address
        self._slots: dict[Hashable, _Slot[R]] = {}
        self._send_lock = trio.StrictFIFOLock()
        self._closed = trio.Event()
        # the socket under a plain SocketStream, written and read through its fd directly
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        self._reads = DirectReads(self._socket, drained=False) if self._socket else None
        # the reader's scope while read_all keeps the calls' deadlines (never later than the
        # earliest deadline of a waiting call)
        self._deadlines: trio.CancelScope | None = None
        #: Why the connection ended (None while it is open).
        self.closed_reason: BaseException | None = None

    @property
    def is_connected(self) -> bool:
        """True until the connection is lost or closed."""
        return self.closed_reason is None

    @property
    def in_flight(self) -> int:
        """Requests written to the peer and still waiting for their reply."""
        return sum(slot.sent for slot in self._slots.values())

    async def wait_closed(self) -> None:
        """Return once the connection has closed or failed (see :attr:`closed_reason`)."""
        await self._closed.wait()

    def lost_error(self) -> ConnectionLostError:
        """A fresh error saying the connection is gone, and why."""
        reason = self.closed_reason
        if isinstance(reason, ConnectionLostError):
            return ConnectionLostError(str(reason), address=self.address)
        return ConnectionLostError(
            f"{self.name} connection to {self.address} lost: {reason}", address=self.address
        )

    def lose(self, reason: BaseException) -> None:
        """The connection ended (the first reason counts): every pending call fails."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.finish(None)
        self._closed.set()

    def complete(self, ident: Hashable, reply: R) -> None:
        """Hand ``reply`` to the call waiting for ``ident`` (dropped if none is: it timed out)."""
        slot = self._slots.pop(ident, None)
        if slot is None:
            log.debug("%s %s: dropping a reply for unknown id %r", self.name, self.address, ident)
            return
        slot.finish(reply)

    # -- reading ------------------------------------------------------------------------------

    async def receive_some(self, max_bytes: int) -> bytes | bytearray:
        """What the reader task reads next: up to ``max_bytes``, ``b""`` at the end of stream.

        Raises:
            trio.ClosedResourceError: the stream was closed here.
            trio.BrokenResourceError, OSError: the connection broke.
        """
        if self._reads is None:
            return await self.stream.receive_some(max_bytes)
        return await self._reads.read(max_bytes)

    async def read_all(self, handle: Callable[[bytes | bytearray], None], max_bytes: int) -> None:
        """The reader task's loop: :meth:`receive_some` and ``handle`` each chunk, until (and
        including) the end of stream, ``b""``; on a socket it keeps the calls' deadlines.

        Raises:
            whatever :meth:`receive_some` or ``handle`` raises.
        """
        if self._socket is None:
            while data := await self.receive_some(max_bytes):
                handle(data)
            handle(data)
            return
        deadline = math.inf
        try:
            while True:
                scope = self._deadlines = trio.CancelScope(deadline=deadline)
                with scope:
                    # cancelled at its deadline only while waiting for data, never with data
                    # read and not yet handled
                    while data := await self.receive_some(max_bytes):
                        handle(data)
                    handle(data)
                    return
                deadline = self._expire()
        finally:
            self._deadlines = None
            # calls still waiting keep their own deadlines from now on
            for slot in self._slots.values():
                if slot.task is not None:
                    task, slot.task = slot.task, None
                    trio.lowlevel.reschedule(task)

    def _expire(self) -> float:
        """Wake the waiting calls whose deadline has passed; the earliest deadline to come."""
        now = trio.current_time()
        earliest = math.inf
        for slot in self._slots.values():
            if slot.deadline > now:
                earliest = min(earliest, slot.deadline)
            elif slot.task is not None:
                # (a call past its deadline with no task is still sending: its own scope
                # stops it)
                slot.timed_out = True
                task, slot.task = slot.task, None
                trio.lowlevel.reschedule(task)
        return earliest

    # -- writing ------------------------------------------------------------------------------

    def _write_now(self, data: bytes) -> int:
        """Write what the socket takes at once (no task is writing): bytes written, or -1 if
        this stream cannot be written this way."""
        sock = self._socket
        if sock is None or self._send_lock.locked():
            return -1
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the socket was closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0

    async def send(self, data: bytes, *, deadline: float = math.inf, schedule: bool = True) -> None:
        """Write ``data`` as one unit. A write interrupted half-way would leave the peer a torn
        message, so the connection is then closed. ``deadline`` bounds the wait for room (no
        cancel scope is made when the socket takes it all at once: a keystroke's path).

        It is always a cancel point. ``schedule=False`` leaves out the schedule point when the
        socket took it all at once: for a caller whose next step is one anyway (a keystroke
        sent, then the wait for its echo), which then saves a pass through the scheduler.

        Raises:
            ConnectionLostError: the connection is closed or the write failed.
            trio.TooSlowError: the deadline passed before it was all written.
        """
        if not await self._send(data, deadline) and schedule:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _send(self, data: bytes, deadline: float = math.inf) -> bool:
        """:meth:`send` within ``deadline``, but without a schedule point when the socket took
        it all at once (a call waits for its reply next, which is one); True if it passed
        through one.

        Raises:
            trio.TooSlowError: the deadline passed before it was all written (the connection
                is then closed, as for any interrupted write).
        """
        if self.closed_reason is not None:
            raise self.lost_error()
        # a caller already cancelled stops here, before a byte is written
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            # the common case: no one else is writing and the socket buffer takes the whole
            # message at once, with no lock taken and no trip through the scheduler
            sent = self._write_now(data)
        except (trio.ClosedResourceError, OSError) as exc:
            self._lose_sending(exc)
            raise self.lost_error() from exc
        if sent == len(data):
            return False
        with trio.fail_at(deadline):
            await self._send_rest(memoryview(data)[sent:] if sent > 0 else data)
        return True

    async def _send_rest(self, data: bytes | memoryview) -> None:
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lose_sending(exc)
            raise self.lost_error() from exc
        except BaseException:
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} closed: a write was interrupted",
                    address=self.address,
                )
            )
            await trio.aclose_forcefully(self.stream)
            raise
        finally:
            lock.release()

    def _lose_sending(self, exc: BaseException) -> None:
        self.lose(
            ConnectionLostError(
                f"{self.name} connection to {self.address} lost while sending: {exc}",
                address=self.address,
            )
        )

    # -- calls --------------------------------------------------------------------------------

    async def call(
        self, ident: Hashable, data: bytes, *, what: str, timeout: float = math.inf
    ) -> R:
        """Send ``data`` (a request carrying ``ident``) and wait for its reply.

        Raises:
            ConnectionLostError: the connection was lost before the reply came.
            VirtrioTimeoutError: no reply within ``timeout`` seconds (a late one is dropped).
        """
        if self.closed_reason is not None:
            raise self.lost_error()
        if timeout < 0 or math.isnan(timeout):
            self._unsent(ident)
            raise ValueError(f"timeout must be a non-negative number, not {timeout!r}")
        deadline = trio.current_time() + timeout
        slot: _Slot[R] = _Slot(deadline)
        self._slots[ident] = slot
        # (a call with no time at all sends nothing: its own scope stops it at once)
        keeper = self._deadlines if timeout > 0 else None
        timed_out = False
        try:
            if keeper is not None:
                if deadline < keeper.deadline:
                    keeper.deadline = deadline
                await self._send(data, deadline)
                slot.sent = True
                if not slot.done:  # (a send that had to wait may have seen the reply come)
                    await slot.wait()
            if not slot.done and not slot.timed_out:
                # no reader keeps the deadlines (or it stopped meanwhile): a scope of its own
                with trio.move_on_at(deadline) as scope:
                    if keeper is None:
                        await self._send(data)
                        slot.sent = True
                    if not slot.done:
                        await slot.wait()
                timed_out = scope.cancelled_caught
        except trio.TooSlowError:
            timed_out = True
        finally:
            # (once its reply came, the id may already number another call: leave its slot)
            if self._slots.get(ident) is slot:
                del self._slots[ident]
            if not slot.sent and self.closed_reason is None:
                # not a byte of it was written (a torn write closes the connection)
                self._unsent(ident)
        if slot.reply is not None:
            return slot.reply
        if timed_out or slot.timed_out:
            raise VirtrioTimeoutError(
                f"{self.name} {what} to {self.address}: no reply within {timeout:g} s"
            )
        raise self.lost_error()

    def _unsent(self, ident: Hashable) -> None:
        """A call gave up before any of its request was written: no reply will come for
        ``ident``. (A hook for subclasses that reuse ids.)"""

    async def aclose(self) -> None:
        """Close the stream; pending calls fail with ConnectionLostError."""
        if self.closed_reason is None:
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} was closed", address=self.address
                )
            )
        await trio.aclose_forcefully(self.stream)
