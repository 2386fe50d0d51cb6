"""``vm.spice``: a supervised Spice session whose calls wait through a reconnect."""

from __future__ import annotations

from virtrio.channels.spice import PortChannel, Rect, SpiceSession
from virtrio.primitives import SupervisedHandle

__all__ = ["SupervisedSpice"]


class SupervisedSpice(SupervisedHandle[SpiceSession]):
    """The VM's Spice handle: screenshots, keys, mouse, port streams. Valid across reconnects
    of the session (each call waits for it up to ``call_timeout``); a session that FAILED (a
    wrong password) makes every call raise that error at once. :attr:`state` is the main
    channel's."""

    async def session(self, *, timeout: float | None = None) -> SpiceSession:
        """The connected session."""
        session, _ = await self._connected(timeout)
        return session

    async def send_keys(self, combo: str) -> None:
        """Press a combination such as ``ctrl-alt-delete``."""
        await (await self.session()).send_keys(combo)

    async def type_text(self, text: str) -> None:
        """Type ``text`` (US layout)."""
        await (await self.session()).type_text(text)

    async def screenshot(self, *, timeout: float | None = None) -> bytes:
        """The screen as PNG bytes."""
        session, deadline = await self._connected(timeout)
        return await session.screenshot(timeout=deadline.remaining())

    async def wait_screen_change(
        self, *, region: Rect | None = None, timeout: float | None = None
    ) -> None:
        """Wait until the screen (or ``region``) changes."""
        session, deadline = await self._connected(timeout)
        await session.wait_screen_change(region=region, timeout=deadline.remaining())

    async def mouse_move(self, dx: int, dy: int) -> None:
        """Relative mouse motion."""
        await (await self.session()).mouse_move(dx, dy)

    async def click(self, button: str = "left") -> None:
        """Click ``button``."""
        await (await self.session()).click(button)

    async def port(self, name: str) -> PortChannel:
        """The spiceport ``name`` as a Trio stream."""
        return await (await self.session()).port(name)
