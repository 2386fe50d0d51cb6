"""A Spice session: main first, then the other channels, each kept up by its own Supervisor.

The session lives as long as its main channel: :meth:`SpiceSession.wait_closed` returns when
main is gone, so a :class:`~virtrio.primitives.Supervisor` over :func:`open_spice_session`
(:mod:`virtrio.nurseries.spice`) brings the whole session (and with it every channel) back.
Any other channel that drops is relinked alone by the session, with the session id it was
linked with.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

import trio

from virtrio.channels._addresses import Address
from virtrio.channels.spice._channel import SpiceChannel, channel_name, open_channel
from virtrio.channels.spice._display import Rect
from virtrio.channels.spice._display_channel import DISPLAY_CAPS, DisplayChannel
from virtrio.channels.spice._inputs import InputsChannel
from virtrio.channels.spice._link import ChannelType
from virtrio.channels.spice._main import (
    CAP_AGENT_CONNECTED_TOKENS,
    CAP_NAME_AND_UUID,
    MSGC_ATTACH_CHANNELS,
    MainChannel,
    MainState,
)
from virtrio.channels.spice._port import PortChannel
from virtrio.channels.spice._transport import SpiceTransport
from virtrio.errors import ChannelUnavailableError, ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Backoff, Deadline, Supervisor, collapse_groups

__all__ = ["DEFAULT_CHANNELS", "SpiceSession", "open_spice_session"]

#: Channels opened by default: what screenshots, keys and the mouse need.
DEFAULT_CHANNELS = frozenset({"display", "inputs", "cursor"})

_Api = DisplayChannel | InputsChannel | PortChannel | SpiceChannel


class _Linked:
    """A supervised sub-channel connection: the channel plus its typed API."""

    def __init__(self, channel: SpiceChannel, api: _Api) -> None:
        self.channel = channel
        self.api = api

    @property
    def is_connected(self) -> bool:
        """Whether the channel is still up."""
        return self.channel.is_connected

    async def wait_closed(self) -> None:
        """Return once the channel is gone."""
        await self.channel.wait_closed()

    @property
    def closed_reason(self) -> BaseException | None:
        return self.channel.closed_reason


class SpiceSession:
    """A connected session. Use :func:`open_spice_session`."""

    def __init__(
        self,
        transport: SpiceTransport,
        password: str,
        main: MainChannel,
        *,
        connect_timeout: float,
        call_timeout: float,
        backoff: Callable[[], Backoff],
        secure: SpiceTransport | None = None,
    ) -> None:
        self.transport = transport
        #: The TLS port, for channels the server only allows over TLS.
        self.secure = secure
        self.main = main
        self._password = password
        self._connect_timeout = connect_timeout
        #: The deadline of a call that passes none (``timeout=None``).
        self.call_timeout = call_timeout
        self._backoff = backoff
        #: Supervisors of the linked channels, keyed by (type, id).
        self.supervisors: dict[tuple[int, int], Supervisor[_Linked]] = {}
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[tuple[int, int], trio.CancelScope] = {}

    @property
    def session_id(self) -> int:
        """The id the server gave this session (links every other channel)."""
        assert self.main.state.init is not None
        return self.main.state.init.session_id

    @property
    def channels(self) -> list[tuple[int, int]]:
        """(type, id) of every channel the server offers."""
        return list(self.main.state.channels or [])

    @property
    def closed_reason(self) -> BaseException | None:
        """Why main closed, if it did."""
        return self.main.channel.closed_reason

    @property
    def is_connected(self) -> bool:
        """Whether the main channel (and so the session) is up."""
        return self.main.channel.is_connected

    async def wait_closed(self) -> None:
        """Return once the main channel (and so the session) is gone."""
        await self.main.channel.wait_closed()

    @asynccontextmanager
    async def _link(self, channel_type: int, channel_id: int) -> AsyncIterator[_Linked]:
        caps = DISPLAY_CAPS if channel_type == ChannelType.DISPLAY else ()
        holder: list[_Api] = []

        def setup(channel: SpiceChannel) -> None:
            api: _Api
            if channel_type == ChannelType.DISPLAY:
                api = DisplayChannel(channel)
            elif channel_type == ChannelType.INPUTS:
                api = InputsChannel(channel)
            elif channel_type in (ChannelType.PORT, ChannelType.WEBDAV):
                api = PortChannel(channel)
            else:
                api = channel  # cursor, sound, usbredir, smartcard: linked and drained
            holder.append(api)

        async with open_channel(
            self.transport,
            channel_type,
            channel_id,
            secure=self.secure,
            connection_id=self.session_id,
            password=self._password,
            channel_caps=caps,
            connect_timeout=self._connect_timeout,
            setup=setup,
        ) as channel:
            api = holder[0]
            with collapse_groups():
                async with trio.open_nursery() as nursery:
                    if isinstance(api, DisplayChannel):
                        await api.start()
                    elif isinstance(api, PortChannel):
                        nursery.start_soon(api.end_when_closed)
                    try:
                        yield _Linked(channel, api)
                    finally:
                        nursery.cancel_scope.cancel()

    def open(self, channel_type: int, channel_id: int = 0) -> Supervisor[_Linked]:
        """Start keeping channel (type, id) linked (idempotent); returns its supervisor."""
        key = (int(channel_type), channel_id)
        if key not in self.supervisors:
            assert self._nursery is not None
            sup: Supervisor[_Linked] = Supervisor(
                f"spice {channel_name(channel_type)}:{channel_id}",
                lambda: self._link(*key),
                backoff=self._backoff(),
            )
            scope = trio.CancelScope()
            self.supervisors[key] = sup
            self._scopes[key] = scope

            async def run() -> None:
                with scope:
                    await sup.run()

            self._nursery.start_soon(run)
        return self.supervisors[key]

    def close_channel(self, channel_type: int, channel_id: int = 0) -> None:
        """Stop keeping channel (type, id) linked and close it."""
        key = (int(channel_type), channel_id)
        self.supervisors.pop(key, None)
        scope = self._scopes.pop(key, None)
        if scope is not None:
            scope.cancel()

    async def _api(self, channel_type: int, channel_id: int, timeout: float | None) -> _Api:
        if (int(channel_type), channel_id) not in self.channels:
            raise ChannelUnavailableError(
                f"the Spice server offers no {channel_name(channel_type)}:{channel_id} channel"
            )
        sup = self.open(channel_type, channel_id)
        linked = await sup.wait_connected(timeout=self.call_timeout if timeout is None else timeout)
        return linked.api

    async def display(self, channel_id: int = 0, *, timeout: float | None = None) -> DisplayChannel:
        """The display channel (linked on demand, waiting through a reconnect)."""
        api = await self._api(ChannelType.DISPLAY, channel_id, timeout)
        assert isinstance(api, DisplayChannel)
        return api

    async def inputs(self, *, timeout: float | None = None) -> InputsChannel:
        """The inputs channel."""
        api = await self._api(ChannelType.INPUTS, 0, timeout)
        assert isinstance(api, InputsChannel)
        return api

    async def port(self, name: str, *, timeout: float | None = None) -> PortChannel:
        """The spiceport named ``name`` (links every port channel to learn the names)."""
        timeout = self.call_timeout if timeout is None else timeout
        deadline = Deadline.after(timeout)
        ports = [key for key in self.channels if key[0] == ChannelType.PORT]
        for kind, cid in ports:
            api = await self._api(kind, cid, deadline.remaining())
            assert isinstance(api, PortChannel)
            with trio.move_on_at(deadline.at):
                await api.ready.wait()
            if api.name == name:
                return api
        raise ChannelUnavailableError(f"no Spice port named {name!r}")

    async def screenshot(self, *, timeout: float | None = None) -> bytes:
        """The primary screen as PNG bytes."""
        t = self.call_timeout if timeout is None else timeout
        return await (await self.display(timeout=t)).screenshot(timeout=t)

    async def wait_screen_change(
        self, *, region: Rect | None = None, timeout: float | None = None
    ) -> None:
        """Wait until the screen (or ``region``) changes."""
        t = self.call_timeout if timeout is None else timeout
        await (await self.display(timeout=t)).wait_change(region=region, timeout=t)

    async def send_keys(self, combo: str) -> None:
        """Press a key combination such as ``ctrl-alt-delete``."""
        await (await self.inputs()).send_keys(combo)

    async def type_text(self, text: str) -> None:
        """Type ``text`` (US layout)."""
        await (await self.inputs()).type_text(text)

    async def mouse_move(self, dx: int, dy: int) -> None:
        """Relative mouse motion."""
        await (await self.inputs()).mouse_move(dx, dy)

    async def click(self, button: str = "left") -> None:
        """Click a mouse button."""
        await (await self.inputs()).click(button)


@asynccontextmanager
async def open_spice_session(
    address: str | Address,
    *,
    password: str = "",
    channels: Collection[str] = DEFAULT_CHANNELS,
    ssl_context: ssl.SSLContext | None = None,
    tls_address: str | Address | None = None,
    connect_timeout: float = 10.0,
    call_timeout: float = 10.0,
    backoff: Callable[[], Backoff] = lambda: Backoff(initial=0.05, maximum=2.0),
) -> AsyncIterator[SpiceSession]:
    """Connect a Spice session at ``address`` (``unix:PATH``, ``tcp://H:P``, ``tls://H:P``,
    ``ws://H:P/``); link main, then the named ``channels`` that the server offers
    (``"all"`` = every one). Other channels link on first use. ``tls_address``
    (``tls://H:P``, verified with ``ssl_context`` or the system CAs) is where channels the
    server refuses on the plain port (NEED_SECURED) are linked. ``connect_timeout`` bounds
    linking main and each channel asked for; ``call_timeout`` is the deadline of a call that
    passes ``timeout=None``.

    Raises:
        SpicePermissionError: wrong or missing password.
        SpiceLinkError, ConnectError, VirtrioTimeoutError: the session could not be set up.
    """
    # with a separate TLS port, the context is for that port only
    transport = SpiceTransport.parse(
        address, ssl_context=ssl_context if tls_address is None else None
    )
    secure = None
    if tls_address is not None:
        secure = SpiceTransport.parse(tls_address, ssl_context=ssl_context)
        if secure.ssl_context is None:
            secure = SpiceTransport(secure.address, SpiceTransport.tls_context())
    state = MainState()
    async with open_channel(
        transport,
        ChannelType.MAIN,
        secure=secure,
        password=password,
        channel_caps=(CAP_NAME_AND_UUID, CAP_AGENT_CONNECTED_TOKENS),
        connect_timeout=connect_timeout,
        setup=lambda ch: setattr(ch, "handler", state.handle),
    ) as channel:
        main = MainChannel(channel, state)
        try:
            with trio.fail_after(connect_timeout):
                await _first(state.init_received.wait, channel.wait_closed)
                if state.init is not None:
                    await channel.send(MSGC_ATTACH_CHANNELS)
                    await _first(state.channels_received.wait, channel.wait_closed)
        except trio.TooSlowError:
            raise VirtrioTimeoutError(
                f"Spice server at {transport.address} sent no channel list in {connect_timeout:g} s"
            ) from None
        if state.channels is None:
            raise ConnectionLostError(
                f"Spice main channel closed during setup: {channel.closed_reason}",
                address=str(transport.address),
            )
        session = SpiceSession(
            transport,
            password,
            main,
            connect_timeout=connect_timeout,
            call_timeout=call_timeout,
            backoff=backoff,
            secure=secure,
        )
        with collapse_groups():
            async with trio.open_nursery() as nursery:
                session._nursery = nursery
                wanted = {c.lower() for c in channels}
                for kind, cid in session.channels:
                    if "all" in wanted or channel_name(kind) in wanted:
                        session.open(kind, cid)
                try:
                    for sup in list(session.supervisors.values()):
                        await sup.wait_connected(timeout=connect_timeout)
                    yield session
                finally:
                    nursery.cancel_scope.cancel()


async def _first(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return when the first of ``waits`` returns."""
    async with trio.open_nursery() as nursery:
        for wait in waits:

            async def one(w: Callable[[], Awaitable[object]] = wait) -> None:
                await w()
                nursery.cancel_scope.cancel()

            nursery.start_soon(one)
