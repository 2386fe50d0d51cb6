"""Spice errors, all within virtrio's one hierarchy."""

from __future__ import annotations

from virtrio.errors import ConnectError, ProtocolError

__all__ = ["SpiceLinkError", "SpicePermissionError", "SpiceProtocolError"]


class SpiceProtocolError(ProtocolError):
    """The Spice server sent bytes that break the protocol."""


class SpiceLinkError(ConnectError):
    """The server refused to link a channel; ``code`` is the SpiceLinkErr value."""

    def __init__(self, message: str, code: int, *, address: str = "") -> None:
        super().__init__(message, address=address)
        self.code = code


class SpicePermissionError(SpiceLinkError, PermissionError):
    """Wrong or missing Spice password (link error PERMISSION_DENIED)."""
