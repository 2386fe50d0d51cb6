"""The virtio-serial errors' base (each error is also one of the generic classes of
:mod:`virtrio.errors`)."""

from __future__ import annotations

from virtrio.errors import VirtrioError

__all__ = ["VirtioSerialError"]


class VirtioSerialError(VirtrioError):
    """Base of the errors of :mod:`virtrio.channels.virtio_serial`."""
