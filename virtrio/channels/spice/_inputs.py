"""Inputs channel: keys (set-1 scancodes), modifiers, mouse honouring the motion-ack window."""

from __future__ import annotations

import struct

import trio

from virtrio.channels.spice._channel import SpiceChannel
from virtrio.channels.spice._framing import Message
from virtrio.channels.spice._keys import break_code, combo_codes, text_strokes

__all__ = ["InputsChannel"]

MSG_INIT = 101
MSG_KEY_MODIFIERS = 102
MSG_MOUSE_MOTION_ACK = 111

MSGC_KEY_DOWN = 101
MSGC_KEY_UP = 102
MSGC_KEY_MODIFIERS = 103
MSGC_MOUSE_MOTION = 111
MSGC_MOUSE_POSITION = 112
MSGC_MOUSE_PRESS = 113
MSGC_MOUSE_RELEASE = 114

MOTION_ACK_BUNCH = 4
BUTTONS = {"left": 1, "middle": 2, "right": 3, "up": 4, "down": 5}


class InputsChannel:
    """Keyboard and mouse. Motion beyond 2 unacked bunches waits for the server's acks."""

    def __init__(self, channel: SpiceChannel) -> None:
        self.channel = channel
        #: LED state (SCROLL=1, NUM=2, CAPS=4) as the server reports it
        self.modifiers = 0
        self.buttons = 0
        self._unacked = 0
        self._acked = trio.Event()
        channel.handler = self.handle

    def handle(self, msg: Message) -> None:
        """Apply one inputs message."""
        if msg.type in (MSG_INIT, MSG_KEY_MODIFIERS) and len(msg.body) >= 2:
            (self.modifiers,) = struct.unpack_from("<H", msg.body)
        elif msg.type == MSG_MOUSE_MOTION_ACK:
            self._unacked = max(0, self._unacked - MOTION_ACK_BUNCH)
            self._acked.set()
            self._acked = trio.Event()

    async def key_down(self, code: int) -> None:
        """Press the key with make ``code``."""
        await self.channel.send(MSGC_KEY_DOWN, struct.pack("<I", code))

    async def key_up(self, code: int) -> None:
        """Release the key with make ``code``."""
        await self.channel.send(MSGC_KEY_UP, struct.pack("<I", break_code(code)))

    async def send_keys(self, combo: str, *, hold: float = 0.01) -> None:
        """Press ``combo`` (``ctrl-alt-delete``): downs in order, ups in reverse."""
        codes = combo_codes(combo)
        for code in codes:
            await self.key_down(code)
        await trio.sleep(hold)
        for code in reversed(codes):
            await self.key_up(code)

    async def type_text(self, text: str, *, pace: float = 0.015) -> None:
        """Type ``text`` with a US layout, pacing keys so the guest's PS/2 queue keeps up."""
        for stroke in text_strokes(text):
            for code in stroke:
                await self.key_down(code)
            for code in reversed(stroke):
                await self.key_up(code)
            await trio.sleep(pace)

    async def set_lock_keys(self, modifiers: int) -> None:
        """Ask the server to set the lock LEDs (SCROLL=1, NUM=2, CAPS=4)."""
        await self.channel.send(MSGC_KEY_MODIFIERS, struct.pack("<H", modifiers))

    async def _motion_slot(self) -> None:
        while self._unacked >= 2 * MOTION_ACK_BUNCH:
            await self._acked.wait()
        self._unacked += 1

    async def mouse_move(self, dx: int, dy: int) -> None:
        """Relative motion (SERVER mouse mode)."""
        await self._motion_slot()
        await self.channel.send(MSGC_MOUSE_MOTION, struct.pack("<iiH", dx, dy, self.buttons))

    async def mouse_position(self, x: int, y: int, *, display: int = 0) -> None:
        """Absolute position (CLIENT mouse mode only; ignored in SERVER mode)."""
        await self._motion_slot()
        await self.channel.send(
            MSGC_MOUSE_POSITION, struct.pack("<IIHB", x, y, self.buttons, display)
        )

    async def mouse_press(self, button: str = "left") -> None:
        """Press ``button`` (left, middle, right, up, down)."""
        b = BUTTONS[button]
        self.buttons |= 1 << (b - 1)
        await self.channel.send(MSGC_MOUSE_PRESS, struct.pack("<BH", b, self.buttons))

    async def mouse_release(self, button: str = "left") -> None:
        """Release ``button``."""
        b = BUTTONS[button]
        self.buttons &= ~(1 << (b - 1))
        await self.channel.send(MSGC_MOUSE_RELEASE, struct.pack("<BH", b, self.buttons))

    async def click(self, button: str = "left") -> None:
        """Press and release ``button``."""
        await self.mouse_press(button)
        await self.mouse_release(button)
