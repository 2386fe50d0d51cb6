"""A machine's console output: its last bytes kept in memory (at most ``history_limit``), all
of it written to a log file, fanned out to listeners.

Every backend feeds the bytes its first UART writes into one :class:`ConsoleBuffer`; it outlives
emulator restarts (a power cycle, a new program), so the output of an instance reads as one.
A guest that prints for days costs the log file's disk, not the server's memory.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import trio

from virtrio.errors import VirtrioTimeoutError
from virtrio.primitives import Fanout, Subscription

__all__ = ["CONSOLE_HISTORY", "ConsoleBuffer", "pump_console"]

#: the console bytes an instance keeps in memory by default (the log file has them all)
CONSOLE_HISTORY = 1 << 20


class ConsoleBuffer:
    """The console's last ``history_limit`` bytes, a waiter for text in them, and a fan-out of
    new chunks."""

    def __init__(
        self,
        log: Path | None = None,
        *,
        max_queue: int = 4096,
        history_limit: int = CONSOLE_HISTORY,
    ) -> None:
        self._data = bytearray()
        self._dropped = 0  # bytes before _data[0], no longer kept
        self._changed = trio.Event()
        self._log = log.open("ab") if log is not None else None
        self._fanout: Fanout[bytes] = Fanout(max_queue=max_queue)
        self._limit = history_limit

    @property
    def history_limit(self) -> int:
        """How many of the last bytes are kept in memory (settable; at least 1)."""
        return self._limit

    @history_limit.setter
    def history_limit(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._trim()

    @property
    def dropped(self) -> int:
        """How many bytes of output are no longer kept (the log file still has them)."""
        return self._dropped

    def _trim(self) -> None:
        excess = len(self._data) - self._limit
        if excess > 0:
            del self._data[:excess]
            self._dropped += excess

    def feed(self, data: bytes) -> None:
        """Record output (from the task that reads the UART)."""
        self._data += data
        self._trim()
        if self._log is not None:
            self._log.write(data)
            self._log.flush()
        self._fanout.publish(bytes(data))
        self._changed.set()
        self._changed = trio.Event()

    def output(self) -> bytes:
        """The output kept: everything so far, or its last ``history_limit`` bytes."""
        return bytes(self._data)

    def subscribe(self) -> Subscription[bytes]:
        """New output as it arrives: ``with console.subscribe() as sub: async for chunk in sub``."""
        return self._fanout.subscribe()

    async def wait_for(self, text: bytes, *, timeout: float = math.inf, start: int = 0) -> bytes:
        """Wait until the output (from offset ``start`` of all output, bytes no longer kept
        excepted) contains ``text``; returns the output kept.

        Raises:
            VirtrioTimeoutError: ``text`` did not appear within ``timeout`` seconds.
        """
        with trio.move_on_after(timeout):
            while text not in self._data[max(0, start - self._dropped) :]:
                await self._changed.wait()
            return bytes(self._data)
        tail = bytes(self._data[-200:])
        raise VirtrioTimeoutError(f"console: {text!r} not seen within {timeout} s (last: {tail!r})")

    def close(self) -> None:
        """End every listener and close the log."""
        self._fanout.close()
        if self._log is not None:
            self._log.close()


async def pump_console(stream: trio.abc.ReceiveStream, console: ConsoleBuffer) -> None:
    """Copy ``stream`` into ``console`` until it ends. A reset is an end too: the emulator
    died (killed, say, by a resource limit), and whoever waits for its exit reports why."""
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            while data := await stream.receive_some(65536):
                console.feed(bytes(data))
