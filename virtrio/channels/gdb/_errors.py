"""The errors of the GDB remote serial protocol client, under :mod:`virtrio.errors`."""

from __future__ import annotations

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
        code: the number of an ``E NN`` reply, read as hex as the protocol defines it, or None
            for a textual ``E.text`` reply. Stubs differ in what they mean by it: QEMU writes
            errno values in decimal digits (``E22`` for EINVAL, ``E14`` for EFAULT), so
            :attr:`error_class` keeps the text as sent.
        error_class: the reply's code as sent (``"E22"``; ``"E"`` for ``E.text`` replies).
        desc: the stub's text, or ``"error NN"``.
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
        return cls(f"E{body}", f"error {body}", command=command, code=code)


class GdbUnsupportedError(GdbCommandError):
    """The stub answered ``command`` with the empty reply: it does not support it."""

    def __init__(self, command: str) -> None:
        super().__init__(
            "unsupported", "the stub does not support this request", command=command, code=None
        )
