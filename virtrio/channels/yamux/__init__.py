"""yamux: many byte streams over one connection (hashicorp/yamux spec), interoperable with the
Go (hashicorp) and Rust (rust-yamux) implementations.

::

    async with open_mux(await open_stream("tcp://127.0.0.1:4000"), client=True) as mux:
        stream = await mux.open_stream()          # a trio.abc.HalfCloseableStream
        await stream.send_all(b"hello")
        await stream.send_eof()
        reply = await stream.receive_some()
        print(await mux.ping())                   # round trip in seconds

Flow control is per stream (256 KiB windows, larger if configured): credit goes back to the
writer only as the reader consumes, so a slow reader throttles its own writer and no other
stream. A reset stream raises :class:`StreamResetError`, never a silent EOF.
"""

from ._errors import (
    YamuxError as YamuxError,
    YamuxLocalProtocolError as YamuxLocalProtocolError,
    YamuxProtocolError as YamuxProtocolError,
)
from ._frames import (
    DEFAULT_WINDOW as DEFAULT_WINDOW,
    Flag as Flag,
    FrameType as FrameType,
    GoAwayCode as GoAwayCode,
)
from ._listener import MuxListener as MuxListener
from ._session import YamuxSession as YamuxSession
from ._stream import (
    MuxStream as MuxStream,
    SessionLostError as SessionLostError,
    StreamResetError as StreamResetError,
)
from ._streams import StreamState as StreamState
from ._trio import MuxSession as MuxSession, open_mux as open_mux

__all__ = [
    "DEFAULT_WINDOW",
    "Flag",
    "FrameType",
    "GoAwayCode",
    "MuxListener",
    "MuxSession",
    "MuxStream",
    "SessionLostError",
    "StreamResetError",
    "StreamState",
    "YamuxError",
    "YamuxLocalProtocolError",
    "YamuxProtocolError",
    "YamuxSession",
    "open_mux",
]
