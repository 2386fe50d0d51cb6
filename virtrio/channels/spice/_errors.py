"""Spice errors, all within virtrio's one hierarchy."""

from __future__ import annotations

from virtrio.errors import (
    AuthenticationError,
    ConnectError,
    LocalProtocolError,
    ProtocolError,
    UnsupportedVersionError,
    VirtrioError,
)

__all__ = [
    "SpiceError",
    "SpiceLinkError",
    "SpiceLocalProtocolError",
    "SpicePermissionError",
    "SpiceProtocolError",
    "SpiceVersionError",
]


class SpiceError(VirtrioError):
    """Base of the Spice errors (each is also one of the generic classes of
    :mod:`virtrio.errors`)."""


class SpiceProtocolError(SpiceError, ProtocolError):
    """The Spice server sent bytes that break the protocol."""


class SpiceLocalProtocolError(SpiceError, LocalProtocolError):
    """We asked for something the protocol's state forbids."""


class SpiceLinkError(SpiceError, ConnectError):
    """The server refused to link a channel; ``code`` is the SpiceLinkErr value."""

    def __init__(self, message: str, code: int, *, address: str = "") -> None:
        super().__init__(message, address=address)
        self.code = code


class SpicePermissionError(SpiceLinkError, AuthenticationError, PermissionError):
    """Wrong or missing Spice password (link error PERMISSION_DENIED). Permanent: a supervisor
    does not retry it."""


class SpiceVersionError(SpiceLinkError, UnsupportedVersionError):
    """The server speaks another Spice major version, or refused ours (VERSION_MISMATCH).
    Permanent."""
