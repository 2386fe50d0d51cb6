"""Opening a domain's virtio-serial channel by name, through libvirt or its host socket."""

from __future__ import annotations

from typing import Literal

import trio

from virtrio.channels._addresses import open_stream
from virtrio.channels.libvirt import ChannelInfo, LibvirtDomain, LibvirtUriError, parse_libvirt_uri
from virtrio.errors import ConfigError

from ._reader import StreamReader

__all__ = ["discover_channels", "open_virtio_serial"]

Via = Literal["auto", "libvirt", "socket"]


async def discover_channels(
    domain: LibvirtDomain, *, timeout: float | None = None
) -> tuple[ChannelInfo, ...]:
    """The domain's virtio-serial channels (names, host side, guest-side state) from its XML."""
    return (await domain.xml(timeout=timeout)).channels


def _is_local(uri: str) -> bool:
    try:
        return not parse_libvirt_uri(uri).is_remote
    except LibvirtUriError:
        return False


async def open_virtio_serial(
    domain: LibvirtDomain, name: str, *, via: Via = "auto", connect_timeout: float = 10.0
) -> StreamReader:
    """Open the domain's virtio-serial channel ``name`` as a :class:`StreamReader`.

    Args:
        via: ``"libvirt"`` streams it through the libvirt connection (works for remote hosts);
            ``"socket"`` connects to the host-side Unix socket the XML names (same machine
            only); ``"auto"`` uses the socket when the host is local and the socket exists,
            else libvirt.
        connect_timeout: seconds to read the XML and open the channel.

    Raises:
        KeyError: the domain has no such channel (the message lists those it has).
        ConfigError: ``via="socket"`` but the channel has no host socket here.
    """
    if via not in ("auto", "libvirt", "socket"):
        raise ConfigError(f"via must be 'auto', 'libvirt' or 'socket', not {via!r}")
    xml = await domain.xml(timeout=connect_timeout)
    channel = xml.channel(name)
    label = f"{domain.name}:{channel.name}"
    if via != "libvirt":
        connection, _ = await domain.resolve(timeout=connect_timeout)
        address = channel.address
        usable = (
            address is not None
            and channel.path is not None
            and _is_local(connection.uri)
            and await trio.Path(channel.path).exists()
        )
        if usable and address is not None:
            return StreamReader(
                await open_stream(address, connect_timeout=connect_timeout), name=label
            )
        if via == "socket":
            raise ConfigError(
                f"channel {label} has no host socket on this machine "
                f"(type {channel.type}, path {channel.path})"
            )
    return StreamReader(
        await domain.open_channel(channel.name, timeout=connect_timeout), name=label
    )
