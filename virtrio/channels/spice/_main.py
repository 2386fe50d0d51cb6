"""Main channel: INIT (session id, mouse modes, agent), CHANNELS_LIST, MOUSE_MODE, agent data."""

from __future__ import annotations

import contextlib
import struct

import attrs
import trio

from virtrio.channels.spice._channel import SpiceChannel
from virtrio.channels.spice._errors import SpiceProtocolError
from virtrio.channels.spice._framing import Message

__all__ = ["MainInit", "MainState", "parse_channels_list", "parse_main_init"]

MSG_INIT = 103
MSG_CHANNELS_LIST = 104
MSG_MOUSE_MODE = 105
MSG_AGENT_CONNECTED = 107
MSG_AGENT_DISCONNECTED = 108
MSG_AGENT_DATA = 109
MSG_AGENT_TOKEN = 110
MSG_NAME = 113
MSG_UUID = 114
MSG_AGENT_CONNECTED_TOKENS = 115

MSGC_ATTACH_CHANNELS = 104
MSGC_MOUSE_MODE_REQUEST = 105
MSGC_AGENT_START = 106
MSGC_AGENT_DATA = 107

CAP_NAME_AND_UUID = 1
CAP_AGENT_CONNECTED_TOKENS = 2

MOUSE_MODE_SERVER = 1
MOUSE_MODE_CLIENT = 2


@attrs.frozen
class MainInit:
    """SPICE_MSG_MAIN_INIT."""

    session_id: int
    display_channels_hint: int
    supported_mouse_modes: int
    current_mouse_mode: int
    agent_connected: int
    agent_tokens: int
    multi_media_time: int
    ram_hint: int


def parse_main_init(body: bytes | bytearray) -> MainInit:
    """Parse MAIN_INIT (32 bytes)."""
    if len(body) < 32:
        raise SpiceProtocolError(f"MAIN_INIT body is {len(body)} bytes, expected 32")
    return MainInit(*struct.unpack_from("<8I", body))


def parse_channels_list(body: bytes | bytearray) -> list[tuple[int, int]]:
    """Parse CHANNELS_LIST into (type, id) pairs."""
    if len(body) < 4:
        raise SpiceProtocolError("CHANNELS_LIST body too short")
    (n,) = struct.unpack_from("<I", body)
    if len(body) < 4 + 2 * n:
        raise SpiceProtocolError(f"CHANNELS_LIST announces {n} channels but is truncated")
    return [(body[4 + 2 * i], body[5 + 2 * i]) for i in range(n)]


class MainState:
    """What the main channel has told us; events fire as things arrive."""

    def __init__(self) -> None:
        self.init: MainInit | None = None
        self.channels: list[tuple[int, int]] | None = None
        self.name: str | None = None
        self.uuid: bytes | None = None
        self.mouse_mode = 0
        self.supported_mouse_modes = 0
        self.agent_connected = False
        self.agent_tokens = 0
        self.init_received = trio.Event()
        self.channels_received = trio.Event()
        #: agent data chunks (the VDAgentMessage byte stream), passed through
        self.agent_send, self.agent_receive = trio.open_memory_channel[bytes](64)
        self.mouse_mode_changed = trio.Event()

    def handle(self, msg: Message) -> None:
        """Apply one main-channel message."""
        if msg.type == MSG_INIT:
            self.init = parse_main_init(msg.body)
            self.mouse_mode = self.init.current_mouse_mode
            self.supported_mouse_modes = self.init.supported_mouse_modes
            self.agent_connected = bool(self.init.agent_connected)
            self.agent_tokens = self.init.agent_tokens
            self.init_received.set()
        elif msg.type == MSG_CHANNELS_LIST:
            self.channels = parse_channels_list(msg.body)
            self.channels_received.set()
        elif msg.type == MSG_MOUSE_MODE:
            if len(msg.body) < 4:
                raise SpiceProtocolError("MOUSE_MODE body too short")
            self.supported_mouse_modes, self.mouse_mode = struct.unpack_from("<HH", msg.body)
            self.mouse_mode_changed.set()
            self.mouse_mode_changed = trio.Event()
        elif msg.type == MSG_NAME and len(msg.body) >= 4:
            (n,) = struct.unpack_from("<I", msg.body)
            self.name = msg.body[4 : 4 + n].rstrip(b"\0").decode(errors="replace")
        elif msg.type == MSG_UUID:
            self.uuid = bytes(msg.body[:16])
        elif msg.type in (MSG_AGENT_CONNECTED, MSG_AGENT_CONNECTED_TOKENS):
            self.agent_connected = True
            if msg.type == MSG_AGENT_CONNECTED_TOKENS and len(msg.body) >= 4:
                self.agent_tokens = struct.unpack_from("<I", msg.body)[0]
        elif msg.type == MSG_AGENT_DISCONNECTED:
            self.agent_connected = False
        elif msg.type == MSG_AGENT_TOKEN and len(msg.body) >= 4:
            self.agent_tokens += struct.unpack_from("<I", msg.body)[0]
        elif msg.type == MSG_AGENT_DATA:
            # nobody reads agent data: drop rather than stall the main channel
            with contextlib.suppress(trio.WouldBlock):
                self.agent_send.send_nowait(bytes(msg.body))


class MainChannel:
    """The main channel of a session."""

    def __init__(self, channel: SpiceChannel, state: MainState) -> None:
        self.channel = channel
        self.state = state

    async def attach_channels(self) -> list[tuple[int, int]]:
        """Send ATTACH_CHANNELS and return the server's channel list."""
        if self.state.channels is None:
            await self.channel.send(MSGC_ATTACH_CHANNELS)
            await self.state.channels_received.wait()
        assert self.state.channels is not None
        return self.state.channels

    async def request_mouse_mode(self, mode: int) -> None:
        """Ask for SERVER (1, relative) or CLIENT (2, absolute) mouse mode."""
        await self.channel.send(MSGC_MOUSE_MODE_REQUEST, struct.pack("<H", mode))

    async def agent_start(self) -> None:
        """Tell the server we accept agent data (unlimited tokens)."""
        await self.channel.send(MSGC_AGENT_START, struct.pack("<I", 0xFFFFFFFF))

    async def send_agent_data(self, data: bytes) -> None:
        """Pass raw VDAgentMessage stream bytes to the agent (≤ 2048 bytes per message)."""
        for i in range(0, len(data), 2048):
            await self.channel.send(MSGC_AGENT_DATA, data[i : i + 2048])
