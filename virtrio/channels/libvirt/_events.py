"""Domain events (lifecycle, reboot, guest-agent lifecycle) as plain data."""

from __future__ import annotations

import enum
import functools

import attrs

__all__ = ["DomainEvent", "EventKind", "lifecycle_names", "agent_names"]


class EventKind(enum.Enum):
    """Which libvirt domain event a :class:`DomainEvent` carries."""

    LIFECYCLE = "lifecycle"  #: VIR_DOMAIN_EVENT_ID_LIFECYCLE (started, suspended, stopped, ...)
    REBOOT = "reboot"  #: VIR_DOMAIN_EVENT_ID_REBOOT
    AGENT_LIFECYCLE = "agent-lifecycle"  #: VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE

    @property
    def event_id(self) -> int:
        """libvirt's ``VIR_DOMAIN_EVENT_ID_*`` number."""
        return {"lifecycle": 0, "reboot": 1, "agent-lifecycle": 18}[self.value]


@attrs.frozen
class DomainEvent:
    """One domain event as delivered by libvirt."""

    kind: EventKind
    #: the domain's name
    domain: str
    #: the domain's UUID (text)
    uuid: str
    #: ``STARTED``, ``SUSPENDED``, ``STOPPED``, ... (lifecycle); ``CONNECTED`` or
    #: ``DISCONNECTED`` (agent lifecycle); ``REBOOT`` (reboot)
    event: str
    #: the reason: ``BOOTED``, ``PAUSED``, ``DESTROYED``, ... (lifecycle); ``DOMAIN_STARTED``,
    #: ``CHANNEL`` (agent lifecycle); empty for reboot
    detail: str = ""
    #: ``trio.current_time()`` when the event reached the Trio thread
    received_at: float = 0.0


_LIFECYCLE = (
    "DEFINED",
    "UNDEFINED",
    "STARTED",
    "SUSPENDED",
    "RESUMED",
    "STOPPED",
    "SHUTDOWN",
    "PMSUSPENDED",
    "CRASHED",
)


@functools.cache
def _details() -> dict[tuple[str, int], str]:
    import libvirt

    details: dict[tuple[str, int], str] = {}
    for event in _LIFECYCLE:
        head = f"VIR_DOMAIN_EVENT_{event}_"
        for name in dir(libvirt):
            if name.startswith(head) and not name.endswith("_LAST"):
                details[(event, getattr(libvirt, name))] = name[len(head) :]
    return details


def lifecycle_names(event: int, detail: int) -> tuple[str, str]:
    """``(event, detail)`` names of a lifecycle event (numbers kept as text if unknown)."""
    name = _LIFECYCLE[event] if 0 <= event < len(_LIFECYCLE) else str(event)
    return name, _details().get((name, detail), str(detail))


def agent_names(state: int, reason: int) -> tuple[str, str]:
    """``(state, reason)`` names of an agent-lifecycle event."""
    states = {1: "CONNECTED", 2: "DISCONNECTED"}
    reasons = {0: "UNKNOWN", 1: "DOMAIN_STARTED", 2: "CHANNEL"}
    return states.get(state, str(state)), reasons.get(reason, str(reason))
