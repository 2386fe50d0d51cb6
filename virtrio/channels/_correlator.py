"""Requests correlated to replies by id over one stream: :class:`Correlator`, shared by the
JSON RPC clients (QMP, the guest agent) and the PTY client.

Each request gets its own slot keyed by its id, so any number of tasks can call at once with no
lock around a round trip: only a message's own bytes are written as one unit. The protocol's
reader task (the one task that reads the stream) calls :meth:`Correlator.complete` with each
reply, and :meth:`Correlator.lose` when the connection ends: every pending call then fails at
once with :class:`~virtrio.errors.ConnectionLostError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable
from typing import Generic, TypeVar

import trio

from virtrio.errors import ConnectionLostError, VirtrioTimeoutError

__all__ = ["Correlator"]

log = logging.getLogger(__name__)

R = TypeVar("R")


class _Slot(Generic[R]):
    __slots__ = ("done", "reply", "sent")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: R | None = None
        self.sent = False


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
            slot.done.set()
        self._closed.set()

    def complete(self, ident: Hashable, reply: R) -> None:
        """Hand ``reply`` to the call waiting for ``ident`` (dropped if none is: it timed out)."""
        slot = self._slots.pop(ident, None)
        if slot is None:
            log.debug("%s %s: dropping a reply for unknown id %r", self.name, self.address, ident)
            return
        slot.reply = reply
        slot.done.set()

    async def send(self, data: bytes) -> None:
        """Write ``data`` as one unit. A write interrupted half-way would leave the peer a torn
        message, so the connection is then closed.

        Raises:
            ConnectionLostError: the connection is closed or the write failed.
        """
        if self.closed_reason is not None:
            raise self.lost_error()
        # a caller already cancelled stops here, before a byte is written
        await trio.lowlevel.checkpoint_if_cancelled()
        # an uncontended lock is taken without a trip through the scheduler (the common case:
        # messages are small and the socket buffer takes them at once)
        lock = self._send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} lost while sending: {exc}",
                    address=self.address,
                )
            )
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
        slot: _Slot[R] = _Slot()
        self._slots[ident] = slot
        try:
            with trio.move_on_after(timeout) as scope:
                await self.send(data)
                slot.sent = True
                await slot.done.wait()
        finally:
            self._slots.pop(ident, None)
        if slot.reply is not None:
            return slot.reply
        if scope.cancelled_caught:
            raise VirtrioTimeoutError(
                f"{self.name} {what} to {self.address}: no reply within {timeout:g} s"
            )
        raise self.lost_error()

    async def aclose(self) -> None:
        """Close the stream; pending calls fail with ConnectionLostError."""
        if self.closed_reason is None:
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} was closed", address=self.address
                )
            )
        await trio.aclose_forcefully(self.stream)
