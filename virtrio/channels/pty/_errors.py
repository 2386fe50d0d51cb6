"""The terminal daemon protocol's errors: one base, local and remote ones under it."""

from __future__ import annotations

from virtrio.errors import LocalProtocolError, ProtocolError, VirtrioError

from ._messages import ErrorCode

__all__ = [
    "FrameTooLargeError",
    "InvalidMessageError",
    "InvalidMsgpackError",
    "PtyError",
    "PtyLocalProtocolError",
    "PtyProtocolError",
    "TruncatedFrameError",
    "UnexpectedTypeError",
    "UnknownTypeError",
]


class PtyError(VirtrioError):
    """Base of the terminal daemon protocol's errors."""


class PtyLocalProtocolError(PtyError, LocalProtocolError):
    """We misused the codec (bytes fed after the end of the stream)."""


class PtyProtocolError(PtyError, ProtocolError):
    """A frame broke the terminal daemon's protocol.

    Attributes:
        code: the :class:`ErrorCode` the daemon replies with.
        fatal: True when the stream has no trustworthy frame boundary any more (close it).
        request_id: the ``id`` of the offending request when it could be read, else None.
    """

    code: ErrorCode = ErrorCode.INVALID_MESSAGE
    fatal: bool = False

    def __init__(self, message: str, *, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class FrameTooLargeError(PtyProtocolError):
    """A length prefix exceeds the limit (fatal: the boundary cannot be trusted)."""

    code = ErrorCode.FRAME_TOO_LARGE
    fatal = True


class TruncatedFrameError(PtyProtocolError):
    """The stream ended inside a frame (fatal)."""

    code = ErrorCode.TRUNCATED_FRAME
    fatal = True


class InvalidMsgpackError(PtyProtocolError):
    """A frame's payload is not exactly one MessagePack value."""

    code = ErrorCode.INVALID_MSGPACK


class InvalidMessageError(PtyProtocolError):
    """A payload is not a map with a string ``type``, or a field is missing or mistyped."""

    code = ErrorCode.INVALID_MESSAGE


class UnknownTypeError(PtyProtocolError):
    """The ``type`` names no message of the protocol."""

    code = ErrorCode.UNKNOWN_TYPE


class UnexpectedTypeError(PtyProtocolError):
    """A known message this side does not accept (an event sent to the daemon, say)."""

    code = ErrorCode.UNEXPECTED_TYPE
