"""One supervised libvirt connection per host, and a pool of them for VM nurseries.

::

    async with open_host("qemu+ssh://root@10.0.0.5/system", keepalive_interval=30) as host:
        with host.state_changes() as states:      # connecting, connected, disconnected, ...
            ...
        print(await host.qmp("vm1").query_status())   # waits through an outage, then
        await host.qga("vm1").ping()                  # raises HostUnavailableError

    async with open_host_pool() as pool:
        host = await pool.host("qemu:///system")       # the same HostNursery for every caller

URIs are validated by :func:`parse_libvirt_uri` with a clear :class:`LibvirtUriError`.
"""

from virtrio.channels.libvirt import (
    LibvirtUri as LibvirtUri,
    LibvirtUriError as LibvirtUriError,
    parse_libvirt_uri as parse_libvirt_uri,
)

from ._host import (
    HostNursery as HostNursery,
    HostPool as HostPool,
    HostQga as HostQga,
    HostQmp as HostQmp,
    HostUnavailableError as HostUnavailableError,
    open_host as open_host,
    open_host_pool as open_host_pool,
)

__all__ = [
    "HostNursery",
    "HostPool",
    "HostQga",
    "HostQmp",
    "HostUnavailableError",
    "LibvirtUri",
    "LibvirtUriError",
    "open_host",
    "open_host_pool",
    "parse_libvirt_uri",
]
