"""The terminal daemon's wire protocol (seed 003): frames, messages, a sans-I/O codec.

Every frame is ``[u32 big-endian length][MessagePack map]`` and every map has a snake_case
``type`` key; see docs/pty-protocol.md for the full protocol with examples. The client SDK,
:func:`open_pty_client`, sits beside the codec here; the daemon (an application) lives in
:mod:`virtrio.engine.pty`.
"""

from ._client import (
    PtyClient as PtyClient,
    PtyEvent as PtyEvent,
    PtyEvents as PtyEvents,
    PtyRequestError as PtyRequestError,
    default_socket_path as default_socket_path,
    open_pty_client as open_pty_client,
)
from ._codec import (
    DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE,
    NEED_DATA as NEED_DATA,
    ConnectionClosed as ConnectionClosed,
    FrameDecoder as FrameDecoder,
    FrameTooLargeError as FrameTooLargeError,
    InvalidMessageError as InvalidMessageError,
    InvalidMsgpackError as InvalidMsgpackError,
    NeedData as NeedData,
    PtyError as PtyError,
    PtyLocalProtocolError as PtyLocalProtocolError,
    PtyProtocolError as PtyProtocolError,
    TruncatedFrameError as TruncatedFrameError,
    UnexpectedTypeError as UnexpectedTypeError,
    UnknownTypeError as UnknownTypeError,
    decode_payload as decode_payload,
    encode as encode,
    encode_output as encode_output,
)
from ._messages import (
    EVENT_TYPES as EVENT_TYPES,
    REQUEST_TYPES as REQUEST_TYPES,
    Ack as Ack,
    Attach as Attach,
    BackpressureWarning as BackpressureWarning,
    Create as Create,
    Created as Created,
    CreateOptions as CreateOptions,
    Detach as Detach,
    Error as Error,
    ErrorCode as ErrorCode,
    Event as Event,
    Exit as Exit,
    Input as Input,
    Kill as Kill,
    Level as Level,
    List as List,
    Message as Message,
    Ok as Ok,
    Output as Output,
    Request as Request,
    Resize as Resize,
    SessionInfo as SessionInfo,
    Sessions as Sessions,
    Signal as Signal,
)
