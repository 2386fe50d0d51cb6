"""libvirt driven by Trio: the event loop, connections, events, streams, QMP/QGA through libvirt.

::

    async with open_connection("qemu:///system") as conn:
        for domain in await conn.list_domains():
            print(domain.name, domain.state)
        vm = LibvirtDomain(conn, "demo")
        print(await LibvirtQmp(vm).query_status())
        print(await LibvirtQga(vm).osinfo())
        with conn.events(domain="demo") as events:
            async for event in events:          # DomainEvent(kind, domain, event, detail)
                print(event.event, event.detail)

libvirt's event loop runs on Trio (:func:`ensure_event_loop`, registered once per process);
every blocking libvirt call runs in a worker thread under the connection's limiter and the
caller's deadline. :func:`parse_libvirt_uri` validates a connection URI with a clear
:class:`LibvirtUriError`. For one supervised connection per host, see
:mod:`virtrio.nurseries.host`.
"""

from ._blocking import run_blocking as run_blocking
from ._connection import (
    DomainSummary as DomainSummary,
    LibvirtConnection as LibvirtConnection,
    open_connection as open_connection,
)
from ._domain import (
    LibvirtDomain as LibvirtDomain,
    LibvirtQga as LibvirtQga,
    LibvirtQmp as LibvirtQmp,
)
from ._domainxml import (
    ChannelInfo as ChannelInfo,
    DomainXml as DomainXml,
    DomainXmlError as DomainXmlError,
    SpiceInfo as SpiceInfo,
    parse_domain_xml as parse_domain_xml,
)
from ._errors import (
    DomainNotFoundError as DomainNotFoundError,
    GuestAgentUnavailableError as GuestAgentUnavailableError,
    LibvirtAuthenticationError as LibvirtAuthenticationError,
    LibvirtCallError as LibvirtCallError,
    LibvirtError as LibvirtError,
    LibvirtLocalError as LibvirtLocalError,
    LibvirtUnsupportedError as LibvirtUnsupportedError,
)
from ._eventloop import (
    EventLoopStats as EventLoopStats,
    ensure_event_loop as ensure_event_loop,
    event_loop_stats as event_loop_stats,
)
from ._events import DomainEvent as DomainEvent, EventKind as EventKind
from ._stream import LibvirtStream as LibvirtStream
from ._uri import (
    LibvirtUri as LibvirtUri,
    LibvirtUriError as LibvirtUriError,
    parse_libvirt_uri as parse_libvirt_uri,
)

__all__ = [
    "ChannelInfo",
    "DomainEvent",
    "DomainNotFoundError",
    "DomainSummary",
    "DomainXml",
    "DomainXmlError",
    "EventKind",
    "EventLoopStats",
    "GuestAgentUnavailableError",
    "LibvirtAuthenticationError",
    "LibvirtCallError",
    "LibvirtError",
    "LibvirtConnection",
    "LibvirtDomain",
    "LibvirtQga",
    "LibvirtQmp",
    "LibvirtStream",
    "LibvirtLocalError",
    "LibvirtUnsupportedError",
    "LibvirtUri",
    "LibvirtUriError",
    "SpiceInfo",
    "ensure_event_loop",
    "event_loop_stats",
    "open_connection",
    "parse_domain_xml",
    "parse_libvirt_uri",
    "run_blocking",
]
