"""Acks the client owes the stub: those the socket could not take when they were due, sent
with the next packet or, when none follows soon, alone.

In ack mode (QEMU 7.2's stub has no other) every packet the stub sends is answered with ``+``.
The fast paths send it as soon as they have read the packet, as GDB does: QEMU's main loop,
woken for it, is still awake when the client's next request comes, where one that went back to
sleep takes ~20 µs to wake on these machines (sending the ``+`` with the next packet instead,
which spares QEMU that wake-up, made a ``g`` exchange 45-91 µs instead of 31-45 µs, 8
alternating rounds in one process, 2026-12-04). When the socket cannot take it at that moment
(another task is writing, or it is full) the ``+`` is owed (:meth:`AckTimer.owe`): the next
request or resume writes it in front of its packet, in one write (:meth:`AckTimer.before`), and
:meth:`AckTimer.run`, a small task, sends it alone once no packet has taken it along within
:data:`ACK_DELAY`. The RSP allows both: QEMU's system-mode stub does not wait for the ``+`` at
all and takes a new packet as the ack of its last; gdbserver waits for it, idle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from virtrio.errors import ConnectionLostError

from ._protocol import GdbProtocol

__all__ = ["ACK_DELAY", "AckTimer"]

#: An ack owed goes out with the next packet, or after this long (to twice it) with none:
#: seconds. While packets keep coming, the timer wakes once per ``ACK_DELAY`` (at 1 ms, ~0.1
#: wake-ups per ``g`` exchange here).
ACK_DELAY = 5e-3


class AckTimer:
    """The acks one connection owes (the protocol holds them; this decides when they go)."""

    def __init__(self, protocol: GdbProtocol, write_now: Callable[[bytes], int]) -> None:
        self._protocol = protocol
        self._write_now = write_now  # what the socket takes at once: the bytes written
        self._wake = trio.Event()  # set when an ack becomes owed with the timer idle
        self._armed = False
        self._owed = 0  # acks owed so far (the timer compares it between two looks)
        self._closed = False

    def ack_now(self) -> None:
        """A fast path took a packet whose ``+`` the protocol now holds: write it at once, or,
        if the socket cannot take it now, owe it."""
        owed = self._protocol.data_to_send()
        sent = self._write_now(owed)
        if sent < len(owed):
            self._protocol.keep_unsent(owed[sent:])
            self.owe()

    def owe(self) -> None:
        """The ``+`` the protocol holds waits for the next packet, or the timer."""
        self._owed += 1
        if not self._armed:
            self._armed = True
            self._wake.set()

    def before(self, packet: bytes) -> bytes:
        """``packet`` after the acks owed to the stub (they go out first, in the same write)."""
        owed = self._protocol.data_to_send()
        return owed + packet if owed else packet

    def close(self) -> None:
        """The connection is gone: :meth:`run` returns."""
        self._closed = True
        self._wake.set()

    async def run(
        self,
        send: Callable[[bytes], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Send (with ``send``) the acks that no packet took along within :data:`ACK_DELAY`,
        until :meth:`close`."""
        task_status.started()
        protocol = self._protocol
        while not self._closed:
            await self._wake.wait()
            self._wake = trio.Event()
            seen = -1
            while not self._closed and protocol.owes_data:
                if self._owed == seen:  # owed since the last look: send it
                    try:
                        await send(protocol.data_to_send())
                    except ConnectionLostError:
                        return
                    break
                seen = self._owed
                await trio.sleep(ACK_DELAY)
            self._armed = False
