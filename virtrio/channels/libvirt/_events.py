"""Domain events (lifecycle, reboot, guest-agent lifecycle) as plain data."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["DomainEvent", "EventKind", "agent_names", "lifecycle_names", "register_domain_events"]


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


#: Called from libvirt's event loop with (kind, the virDomain, event name, detail name).
Deliver = Callable[[EventKind, Any, str, str], None]


def register_domain_events(raw: Any, deliver: Deliver) -> dict[EventKind, int]:
    """Register every domain event kind on the ``virConnect`` ``raw`` (blocking: three round
    trips), each delivered to ``deliver``; returns libvirt's callback ids by kind. A kind the
    driver does not support is left out (its subscribers see no such events)."""
    import libvirt

    def on_lifecycle(_c: Any, dom: Any, event: int, detail: int, _o: Any) -> None:
        deliver(EventKind.LIFECYCLE, dom, *lifecycle_names(event, detail))

    def on_reboot(_c: Any, dom: Any, _o: Any) -> None:
        deliver(EventKind.REBOOT, dom, "REBOOT", "")

    def on_agent(_c: Any, dom: Any, state: int, reason: int, _o: Any) -> None:
        deliver(EventKind.AGENT_LIFECYCLE, dom, *agent_names(state, reason))

    callbacks: dict[EventKind, Callable[..., None]] = {
        EventKind.LIFECYCLE: on_lifecycle,
        EventKind.REBOOT: on_reboot,
        EventKind.AGENT_LIFECYCLE: on_agent,
    }
    ids: dict[EventKind, int] = {}
    for kind, callback in callbacks.items():
        try:
            ids[kind] = raw.domainEventRegisterAny(None, kind.event_id, callback, None)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                raise
    return ids
