"""yamux's errors: one base, the peer's violations and our own misuse under it."""

from __future__ import annotations

from virtrio.errors import LocalProtocolError, ProtocolError, VirtrioError

__all__ = ["YamuxError", "YamuxLocalProtocolError", "YamuxProtocolError"]


class YamuxError(VirtrioError):
    """Base of the yamux errors (each is also one of the generic classes of
    :mod:`virtrio.errors`: a reset stream is a lost connection, not a protocol violation)."""


class YamuxProtocolError(YamuxError, ProtocolError):
    """The peer broke the yamux protocol; the session sends GoAway(protocol error) and ends."""


class YamuxLocalProtocolError(YamuxError, LocalProtocolError):
    """We asked for something the session's or the stream's state forbids (data after our
    FIN, an open after the peer's GoAway, a stream that is gone); nothing was sent."""
