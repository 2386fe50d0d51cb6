"""The options of one xtransport endpoint: :class:`XtransferConfig`."""

from __future__ import annotations

import attrs

from virtrio.errors import ConfigError

from ._wire import HEADER_SIZE, MAX_FRAME_SIZE, MAX_PAYLOAD

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "XtransferConfig"]

#: Largest message accepted by default (a MessageHead announcing more is an error).
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
_U64 = 0xFFFFFFFFFFFFFFFF


def _check_frame_size(_: object, __: object, value: int) -> None:
    if not HEADER_SIZE < value <= MAX_FRAME_SIZE:
        raise ConfigError(
            f"max_frame_size {value} is out of range: it must be"
            f" {HEADER_SIZE + 1}..{MAX_FRAME_SIZE} (a {HEADER_SIZE}-byte header plus"
            f" 1..{MAX_PAYLOAD} payload bytes)"
        )


def _check_message_size(_: object, __: object, value: int) -> None:
    if not 0 <= value <= _U64:
        raise ConfigError(f"max_message_size {value} is not in 0..2**64-1")


@attrs.frozen
class XtransferConfig:
    """Options of one xtransport endpoint (xtransfer's ``TransportConfig``).

    Neither is negotiated: both ends must agree on ``ack``; ``max_frame_size`` only shapes what
    this side sends (any packet up to 65535 payload bytes is accepted).
    """

    #: Largest packet this side sends, header included (xtransfer's default 4096; virga's 1024).
    max_frame_size: int = attrs.field(default=4096, validator=_check_frame_size)
    #: Stop-and-wait: every packet is acknowledged by the receiver before the next is sent.
    ack: bool = False
    #: Largest message accepted from the peer; bounds the memory one message can take.
    max_message_size: int = attrs.field(
        default=DEFAULT_MAX_MESSAGE_SIZE, validator=_check_message_size
    )

    @property
    def max_payload(self) -> int:
        """Payload bytes per packet this side sends."""
        return self.max_frame_size - HEADER_SIZE
