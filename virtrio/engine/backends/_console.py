"""A machine's console output: kept whole, written to a log file, fanned out to listeners.

Every backend feeds the bytes its first UART writes into one :class:`ConsoleBuffer`; it outlives
emulator restarts (a power cycle, a new program), so the output of an instance reads as one.
"""

from __future__ import annotations

import math
from pathlib import Path

import trio

from virtrio.errors import VirtrioTimeoutError
from virtrio.primitives import Fanout, Subscription

__all__ = ["ConsoleBuffer", "pump_console"]


class ConsoleBuffer:
    """The console's bytes so far, a waiter for text in them, and a fan-out of new chunks."""

    def __init__(self, log: Path | None = None, *, max_queue: int = 4096) -> None:
        self._data = bytearray()
        self._changed = trio.Event()
        self._log = log.open("ab") if log is not None else None
        self._fanout: Fanout[bytes] = Fanout(max_queue=max_queue)

    def feed(self, data: bytes) -> None:
        """Record output (from the task that reads the UART)."""
        self._data += data
        if self._log is not None:
            self._log.write(data)
            self._log.flush()
        self._fanout.publish(bytes(data))
        self._changed.set()
        self._changed = trio.Event()

    def output(self) -> bytes:
        """Everything written so far."""
        return bytes(self._data)

    def subscribe(self) -> Subscription[bytes]:
        """New output as it arrives: ``with console.subscribe() as sub: async for chunk in sub``."""
        return self._fanout.subscribe()

    async def wait_for(self, text: bytes, *, timeout: float = math.inf, start: int = 0) -> bytes:
        """Wait until the output (from offset ``start``) contains ``text``; returns it all.

        Raises:
            VirtrioTimeoutError: ``text`` did not appear within ``timeout`` seconds.
        """
        with trio.move_on_after(timeout):
            while text not in self._data[start:]:
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
    """Copy ``stream`` into ``console`` until it ends."""
    async with stream:
        while data := await stream.receive_some(65536):
            console.feed(bytes(data))
