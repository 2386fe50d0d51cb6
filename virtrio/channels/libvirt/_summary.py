"""What :meth:`~._connection.LibvirtConnection.list_domains` returns: one
:class:`DomainSummary` per domain, its state by libvirt's name."""

from __future__ import annotations

import attrs

__all__ = ["DomainSummary", "state_name"]


@attrs.frozen
class DomainSummary:
    """A domain as listed by :meth:`LibvirtConnection.list_domains`."""

    name: str
    uuid: str
    #: the running domain's id, or -1 when it is not running
    id: int
    #: libvirt's state name: ``running``, ``paused``, ``shutoff``, ...
    state: str
    persistent: bool


_STATE_NAMES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}


def state_name(state: int) -> str:
    """libvirt's ``virDomainState`` as a lower-case name."""
    return _STATE_NAMES.get(state, str(state))
