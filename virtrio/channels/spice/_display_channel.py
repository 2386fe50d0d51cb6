"""Display channel over Trio: ask for raw images, keep the framebuffer, screenshots and waits."""

from __future__ import annotations

import struct

import trio

from virtrio.channels.spice._channel import SpiceChannel
from virtrio.channels.spice._display import (
    CAP_MONITORS_CONFIG,
    CAP_MULTI_CODEC,
    CAP_PREF_COMPRESSION,
    COMPRESSION_OFF,
    MSGC_INIT,
    MSGC_PREFERRED_COMPRESSION,
    DisplayState,
    Rect,
)
from virtrio.channels.spice._framing import Message
from virtrio.channels.spice._link import has_cap
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Deadline

__all__ = ["DISPLAY_CAPS", "DisplayChannel"]

#: Client display caps: monitors config, and MULTI_CODEC with no codec so no video streams.
DISPLAY_CAPS = (CAP_MONITORS_CONFIG, CAP_MULTI_CODEC)


class DisplayChannel:
    """One display channel's surfaces; :meth:`screenshot`, :meth:`wait_change`."""

    def __init__(self, channel: SpiceChannel) -> None:
        self.channel = channel
        self.state = DisplayState()
        self._changed = trio.Event()
        channel.handler = self.handle
        # full-width bitmaps (a QXL guest's screen updates) are read into the framebuffer
        channel.place_bodies(self.state.place)

    def handle(self, msg: Message) -> None:
        """Apply one display message and wake waiters."""
        before = self.state.generation
        self.state.handle(msg.type, msg.body, placed=msg.placed)
        if self.state.generation != before:
            self._changed.set()
            self._changed = trio.Event()

    async def start(self) -> None:
        """Ask for uncompressed images (before INIT, so the first frame is raw) and send INIT."""
        if has_cap(self.channel.server_caps, CAP_PREF_COMPRESSION):
            await self.channel.send(MSGC_PREFERRED_COMPRESSION, bytes([COMPRESSION_OFF]))
        await self.channel.send(MSGC_INIT, struct.pack("<BqBi", 1, 20 * 1024 * 1024, 1, 0))

    async def _wait_event(self, what: str, deadline: Deadline) -> None:
        event = self._changed
        with trio.move_on_at(deadline.at):
            async with trio.open_nursery() as nursery:

                async def closed() -> None:
                    await self.channel.wait_closed()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(closed)
                await event.wait()
                nursery.cancel_scope.cancel()
        if not self.channel.is_connected:
            raise ConnectionLostError(
                f"display channel closed while waiting for {what}",
                address=self.channel.address,
            ) from self.channel.closed_reason
        if deadline.expired:
            raise VirtrioTimeoutError(f"timed out waiting for {what}")

    async def wait_ready(self, *, timeout: float = 10.0) -> None:
        """Wait until the primary surface has been fully drawn once (MARK)."""
        deadline = Deadline.after(timeout)
        while not (self.state.marked and self.state.primary is not None):
            await self._wait_event("the first complete frame", deadline)

    async def screenshot(self, *, timeout: float = 10.0) -> bytes:
        """The primary surface as PNG bytes (waits for the first complete frame)."""
        await self.wait_ready(timeout=timeout)
        primary = self.state.primary
        assert primary is not None
        return primary.to_png()

    async def wait_change(self, *, region: Rect | None = None, timeout: float = 10.0) -> None:
        """Wait until the screen (or ``region`` of it) differs from now."""
        deadline = Deadline.after(timeout)
        await self.wait_ready(timeout=timeout)
        start = self._snapshot(region)
        while self._snapshot(region) == start:
            await self._wait_event("a screen change", deadline)

    async def wait_region(self, region: Rect, expected: bytes, *, timeout: float = 10.0) -> None:
        """Wait until ``region`` holds exactly ``expected`` BGRX bytes."""
        deadline = Deadline.after(timeout)
        await self.wait_ready(timeout=timeout)
        while self._snapshot(region) != expected:
            await self._wait_event(f"{region} to match", deadline)

    def _snapshot(self, region: Rect | None) -> bytes:
        primary = self.state.primary
        if primary is None:
            return b""
        rect = region or Rect(0, 0, primary.width, primary.height)
        return primary.region(rect)
