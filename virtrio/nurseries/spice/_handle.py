"""``vm.spice``: a supervised Spice session whose calls wait through a reconnect."""

from __future__ import annotations

from virtrio.channels.spice import PortChannel, Rect, SpiceSession
from virtrio.primitives import ChannelState, Supervisor

__all__ = ["SupervisedSpice"]


class SupervisedSpice:
    """The VM's Spice handle: screenshots, keys, mouse, port streams. Valid across reconnects
    of the session (each call waits for it up to ``call_timeout``)."""

    def __init__(self, supervisor: Supervisor[SpiceSession], call_timeout: float) -> None:
        self.supervisor = supervisor
        self.call_timeout = call_timeout

    @property
    def state(self) -> ChannelState:
        """The session's (main channel's) state."""
        return self.supervisor.state

    @property
    def is_connected(self) -> bool:
        """True while the session is connected."""
        return self.supervisor.state is ChannelState.CONNECTED

    async def session(self, *, timeout: float | None = None) -> SpiceSession:
        """The connected session."""
        t = self.call_timeout if timeout is None else timeout
        return await self.supervisor.wait_connected(timeout=t)

    async def send_keys(self, combo: str) -> None:
        """Press a combination such as ``ctrl-alt-delete``."""
        await (await self.session()).send_keys(combo)

    async def type_text(self, text: str) -> None:
        """Type ``text`` (US layout)."""
        await (await self.session()).type_text(text)

    async def screenshot(self, *, timeout: float | None = None) -> bytes:
        """The screen as PNG bytes."""
        t = self.call_timeout if timeout is None else timeout
        return await (await self.session(timeout=t)).screenshot(timeout=t)

    async def wait_screen_change(
        self, *, region: Rect | None = None, timeout: float | None = None
    ) -> None:
        """Wait until the screen (or ``region``) changes."""
        t = self.call_timeout if timeout is None else timeout
        await (await self.session(timeout=t)).wait_screen_change(region=region, timeout=t)

    async def mouse_move(self, dx: int, dy: int) -> None:
        """Relative mouse motion."""
        await (await self.session()).mouse_move(dx, dy)

    async def click(self, button: str = "left") -> None:
        """Click ``button``."""
        await (await self.session()).click(button)

    async def port(self, name: str) -> PortChannel:
        """The spiceport ``name`` as a Trio stream."""
        return await (await self.session()).port(name)
