"""The errors of the GDB remote serial protocol client, under :mod:`virtrio.errors`."""

from __future__ import annotations

import errno

from virtrio.errors import CommandError, LocalProtocolError, ProtocolError, VirtrioError

__all__ = [
    "GdbCommandError",
    "GdbError",
    "GdbLocalProtocolError",
    "GdbProtocolError",
    "GdbUnsupportedError",
]


class GdbError(VirtrioError):
    """Base of every error of the GDB client."""


class GdbProtocolError(GdbError, ProtocolError):
    """The stub sent something that breaks the remote serial protocol (remote); the connection
    is closed."""


class GdbLocalProtocolError(GdbError, LocalProtocolError):
    """We were asked for something the protocol or the target's state forbids (local): a
    request while the target runs, a register the target description does not name, ..."""


class GdbCommandError(GdbError, CommandError):
    """The stub answered ``command`` with an error reply (``E NN`` or ``E.text``).

    Attributes:
        code: the error number of an ``E NN`` reply (GDB uses errno values: 22 is EINVAL, 14
            EFAULT), or None for a textual ``E.text`` reply.
        error_class: ``"E22"``-style text (``"E.text"`` replies: ``"E"``).
        desc: a readable description (the errno name, or the stub's text).
        command: the request that failed (its first 64 bytes, as text).
    """

    def __init__(self, error_class: str, desc: str, *, command: str, code: int | None) -> None:
        super().__init__(error_class, desc, command=command)
        self.code = code

    @classmethod
    def from_reply(cls, reply: bytes, command: str) -> GdbCommandError:
        """The error for an ``E``-reply to ``command``."""
        body = reply[1:].decode("ascii", "replace")
        if body.startswith("."):
            return cls("E", body[1:], command=command, code=None)
        try:
            code = int(body, 16)
        except ValueError:
            return cls(f"E{body}", "error reply", command=command, code=None)
        name = errno.errorcode.get(code)
        desc = f"error {code}" + (f" ({name})" if name else "")
        return cls(f"E{body}", desc, command=command, code=code)


class GdbUnsupportedError(GdbCommandError):
    """The stub answered ``command`` with the empty reply: it does not support it."""

    def __init__(self, command: str) -> None:
        super().__init__(
            "unsupported", "the stub does not support this request", command=command, code=None
        )
