"""The messaging errors' base (each error is also one of the generic classes of
:mod:`virtrio.errors`)."""

from __future__ import annotations

from virtrio.errors import VirtrioError

__all__ = ["MessagingError"]


class MessagingError(VirtrioError):
    """Base of the errors of :mod:`virtrio.channels.messaging` (framing, middleware, health
    checks); the transports' own errors are :class:`~virtrio.channels.yamux.YamuxError` and
    :class:`~virtrio.channels.xtransfer.XtransferError`."""
