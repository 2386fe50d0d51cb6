"""The Spice address of a libvirt domain, from its domain XML (the libvirt layer's SpiceInfo)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from virtrio.channels.spice._session import SpiceSession, open_spice_session
from virtrio.errors import ChannelUnavailableError

if TYPE_CHECKING:
    import ssl

    from virtrio.channels.libvirt import LibvirtDomain, SpiceInfo

__all__ = ["open_domain_spice", "spice_addresses"]


def spice_addresses(info: SpiceInfo) -> tuple[str | None, str | None]:
    """(plain address, TLS address) for :func:`open_spice_session`, either may be None."""
    if info.socket:
        return f"unix:{info.socket}", None
    host = info.address or "127.0.0.1"
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    plain = f"tcp://{host}:{info.port}" if info.port else None
    tls = f"tls://{host}:{info.tls_port}" if info.tls_port else None
    return plain, tls


@asynccontextmanager
async def open_domain_spice(
    domain: LibvirtDomain,
    *,
    password: str = "",
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
    call_timeout: float = 10.0,
) -> AsyncIterator[SpiceSession]:
    """A Spice session to the display in ``domain``'s live XML (read on every connect, so a
    restarted domain's new autoport is followed)."""
    xml = await domain.xml(timeout=connect_timeout)
    if xml.spice is None:
        raise ChannelUnavailableError(f"libvirt domain {domain.name} has no Spice display")
    plain, tls = spice_addresses(xml.spice)
    address = plain or tls
    if address is None:
        raise ChannelUnavailableError(
            f"libvirt domain {domain.name}: Spice has no port yet (domain not running?)"
        )
    async with open_spice_session(
        address,
        password=password,
        ssl_context=ssl_context,
        tls_address=tls if plain else None,
        connect_timeout=connect_timeout,
        call_timeout=call_timeout,
    ) as session:
        yield session
