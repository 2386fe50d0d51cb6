"""xtransport, byte-exact with kylin-x-kernel/xtransfer (and the copy vendored by virga).

xtransport is message framing, not a multiplexer: 16-byte little-endian packet headers with a
CRC-32, long messages split into a MessageHead and MessageData packets, and an optional
stop-and-wait Ack per packet. :class:`XtransferProtocol` is the sans-I/O core;
:func:`open_xtransfer` runs it over any Trio stream::

    stream = await open_stream("vsock://103:1234")
    async with open_xtransfer(stream, XtransferConfig(max_frame_size=1024)) as channel:
        await channel.send(b"hello")
        reply = await channel.receive()

:class:`XtransferStream` makes one connection a half-closeable byte stream (a *lane*, ended by
an empty message), as ``vm.mux(name)`` hands out with ``protocol: xtransport``.
"""

from ._channel import XtransferChannel as XtransferChannel, open_xtransfer as open_xtransfer
from ._lane import (
    XtransferLaneLostError as XtransferLaneLostError,
    XtransferStream as XtransferStream,
)
from ._protocol import (
    DEFAULT_MAX_MESSAGE_SIZE as DEFAULT_MAX_MESSAGE_SIZE,
    NEED_DATA as NEED_DATA,
    ConnectionClosed as ConnectionClosed,
    Message as Message,
    MessageDelivered as MessageDelivered,
    NeedData as NeedData,
    XtransferConfig as XtransferConfig,
    XtransferProtocol as XtransferProtocol,
)
from ._wire import (
    MAX_FRAME_SIZE as MAX_FRAME_SIZE,
    PacketType as PacketType,
    XtransferChecksumError as XtransferChecksumError,
    XtransferError as XtransferError,
    XtransferFramingError as XtransferFramingError,
    XtransferMagicError as XtransferMagicError,
    XtransferMessageTooLargeError as XtransferMessageTooLargeError,
    XtransferProtocolError as XtransferProtocolError,
    XtransferTruncatedError as XtransferTruncatedError,
    XtransferVersionError as XtransferVersionError,
    encode_packet as encode_packet,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "MAX_FRAME_SIZE",
    "NEED_DATA",
    "ConnectionClosed",
    "Message",
    "MessageDelivered",
    "NeedData",
    "PacketType",
    "XtransferChannel",
    "XtransferChecksumError",
    "XtransferConfig",
    "XtransferError",
    "XtransferFramingError",
    "XtransferLaneLostError",
    "XtransferMagicError",
    "XtransferMessageTooLargeError",
    "XtransferProtocol",
    "XtransferProtocolError",
    "XtransferStream",
    "XtransferTruncatedError",
    "XtransferVersionError",
    "encode_packet",
    "open_xtransfer",
]
