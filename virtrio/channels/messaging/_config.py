"""ClientConfig and ServerConfig: where to connect or listen, deadlines, the connection limit."""

from __future__ import annotations

from typing import Any

import attrs

from virtrio.channels._addresses import VMADDR_CID_ANY, Address, parse_address
from virtrio.errors import ConfigError
from virtrio.primitives._deprecated import warn_renamed

__all__ = ["DEFAULT_CLIENT_CID", "DEFAULT_PORT", "ClientConfig", "ServerConfig"]

#: virga's defaults: a client talks to the guest at CID 103 (QEMU's), port 1234.
DEFAULT_CLIENT_CID = 103
DEFAULT_PORT = 1234


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < 1:
        raise ConfigError(f"{attribute.name} must be at least 1, got {value!r}")


def _stream_address(instance: object, attribute: attrs.Attribute[Any], value: Address) -> None:
    if value.scheme not in ("vsock", "tcp", "unix"):
        raise ConfigError(f"{attribute.name} {value} is not a vsock, tcp or unix address")


def _message_size(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value < 2**64:
        raise ConfigError(f"{attribute.name} must be in 0..2**64-1, got {value!r}")


def _renamed_io_timeout(where: str, options: dict[str, Any]) -> dict[str, Any]:
    if "io_timeout" in options:
        warn_renamed(where, "io_timeout", "call_timeout", stacklevel=4)
        options["call_timeout"] = options.pop("io_timeout")
    return options


@attrs.frozen(init=False)
class ClientConfig:
    """Where a :class:`MessageClient` connects, and its deadlines (virga's ``ClientConfig``).

    >>> ClientConfig.vsock(103, 1234).address
    Address(scheme='vsock', path='', host='', port=1234, cid=103)
    >>> ClientConfig("tcp://127.0.0.1:1234", connect_timeout=2).connect_timeout
    2
    """

    #: The server: ``vsock://cid:port``, ``tcp://host:port`` or ``unix:/path``.
    address: Address = attrs.field(
        default=Address.vsock(DEFAULT_CLIENT_CID, DEFAULT_PORT),
        converter=parse_address,
        validator=_stream_address,
    )
    #: Seconds to establish the connection (and the transport on it).
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    #: Default deadline of each send and receive in seconds; ``None`` waits as long as the
    #: caller's own cancel scope allows.
    call_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: Largest message accepted from the server.
    max_message_size: int = attrs.field(default=64 * 1024 * 1024, validator=_message_size)

    def __init__(self, *args: Any, **options: Any) -> None:
        """The fields in order, or by name (``io_timeout=`` is the deprecated ``call_timeout``)."""
        self.__attrs_init__(*args, **_renamed_io_timeout("ClientConfig", options))

    @classmethod
    def vsock(
        cls, cid: int = DEFAULT_CLIENT_CID, port: int = DEFAULT_PORT, **options: Any
    ) -> ClientConfig:
        """A config for the vsock server at ``cid:port`` (virga's ``ClientConfig::new``)."""
        return cls(_vsock(cid, port), **options)


@attrs.frozen(init=False)
class ServerConfig:
    """Where a :class:`MessageServer` listens and how many clients it serves at once."""

    #: The listening address; virga's default is any CID, port 1234.
    address: Address = attrs.field(
        default=Address.vsock(VMADDR_CID_ANY, DEFAULT_PORT),
        converter=parse_address,
        validator=_stream_address,
    )
    #: Connections served at once; more wait in the listen backlog until one ends.
    max_connections: int = attrs.field(default=64, validator=_at_least_one)
    #: Default deadline of each send and receive in seconds (``None``: no deadline).
    call_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: Seconds a new connection has to set up its transport (for yamux: to open its stream,
    #: which a rust-yamux client does lazily, with its first message).
    handshake_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: Largest message accepted from a client.
    max_message_size: int = attrs.field(default=64 * 1024 * 1024, validator=_message_size)

    def __init__(self, *args: Any, **options: Any) -> None:
        """The fields in order, or by name (``io_timeout=`` is the deprecated ``call_timeout``)."""
        self.__attrs_init__(*args, **_renamed_io_timeout("ServerConfig", options))

    @classmethod
    def vsock(
        cls, cid: int = VMADDR_CID_ANY, port: int = DEFAULT_PORT, **options: Any
    ) -> ServerConfig:
        """A config listening on vsock ``cid:port`` (virga's ``ServerConfig::new``)."""
        return cls(_vsock(cid, port), **options)


def _vsock(cid: int, port: int) -> Address:
    if not (0 <= cid <= 0xFFFFFFFF and 0 <= port <= 0xFFFFFFFF):
        raise ConfigError(f"vsock cid {cid} and port {port} must both be 32-bit numbers")
    return Address.vsock(cid, port)
