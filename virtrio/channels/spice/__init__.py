"""A pure-Python Spice client on Trio (feature: Spice, issue 5).

>>> async with open_spice_session("unix:/run/vm/spice.sock") as spice:  # doctest: +SKIP
...     png = await spice.screenshot()
...     await spice.send_keys("ctrl-alt-delete")

Layers: sans-I/O cores (:mod:`._link`, :mod:`._framing`, :mod:`._display`, :mod:`._keys`) under
thin Trio adapters, one module per channel type (:mod:`._main`, :mod:`._inputs`,
:mod:`._display_channel`, :mod:`._port`; cursor, playback, record, usbredir, smartcard and
webdav channels are linked and drained by the generic :class:`SpiceChannel`), transports
(Unix, TCP, TLS, WebSocket) in :mod:`._transport`, and :class:`SpiceSession` which relinks each
sub-channel with its own :class:`~virtrio.primitives.Supervisor` while main is up. Keeping a
whole session alive (``vm.spice``, :class:`~virtrio.nurseries.spice.SpiceManager`) lives in
:mod:`virtrio.nurseries.spice`.
"""

from virtrio.channels.spice._channel import SpiceChannel, open_channel
from virtrio.channels.spice._display import DisplayState, Rect, Surface, encode_png
from virtrio.channels.spice._display_channel import DisplayChannel
from virtrio.channels.spice._errors import (
    SpiceError,
    SpiceLinkError,
    SpiceLocalProtocolError,
    SpicePermissionError,
    SpiceProtocolError,
    SpiceVersionError,
)
from virtrio.channels.spice._inputs import InputsChannel
from virtrio.channels.spice._keys import break_code, combo_codes, key_code, text_strokes
from virtrio.channels.spice._libvirt import open_domain_spice, spice_addresses
from virtrio.channels.spice._link import ChannelType, Linked, LinkErr, LinkState, SpiceLink
from virtrio.channels.spice._main import MainChannel, MainInit, MainState
from virtrio.channels.spice._port import PortChannel
from virtrio.channels.spice._session import DEFAULT_CHANNELS, SpiceSession, open_spice_session
from virtrio.channels.spice._transport import SpiceTransport

__all__ = [
    "DEFAULT_CHANNELS",
    "ChannelType",
    "DisplayChannel",
    "DisplayState",
    "InputsChannel",
    "LinkErr",
    "LinkState",
    "Linked",
    "MainChannel",
    "MainInit",
    "MainState",
    "PortChannel",
    "Rect",
    "SpiceChannel",
    "SpiceError",
    "SpiceLink",
    "SpiceLinkError",
    "SpiceLocalProtocolError",
    "SpicePermissionError",
    "SpiceVersionError",
    "SpiceProtocolError",
    "SpiceSession",
    "SpiceTransport",
    "Surface",
    "break_code",
    "combo_codes",
    "encode_png",
    "key_code",
    "open_channel",
    "open_domain_spice",
    "open_spice_session",
    "spice_addresses",
    "text_strokes",
]
