"""Addresses as URLs, and the one helper that opens a Trio stream or listeners from one.

Every place in virtrio that connects or listens takes the same syntax (feature V2)::

    unix:/run/qemu/qmp.sock        a Unix stream socket (also ``unix:///abs/path``)
    tcp://127.0.0.1:4444           TCP; IPv6 hosts in brackets: ``tcp://[::1]:4444``
    vsock://3:1024                 AF_VSOCK; cid may be a number or ``host``/``any``/``local``
    ws://127.0.0.1:5959/path       a WebSocket URL (opened by the WebSocket layer, not here)

>>> addr = parse_address("tcp://127.0.0.1:4444")
>>> addr.host, addr.port
('127.0.0.1', 4444)

:func:`open_stream` connects with a timeout and raises :class:`~virtrio.errors.ConnectError`
naming the address; :func:`open_listeners` binds and listens.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Literal

import attrs
import trio

from virtrio.errors import ConfigError, ConnectError

__all__ = [
    "VMADDR_CID_ANY",
    "VMADDR_CID_HOST",
    "VMADDR_CID_LOCAL",
    "Address",
    "open_listeners",
    "open_stream",
    "parse_address",
]

Scheme = Literal["unix", "tcp", "vsock", "ws", "wss"]

VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_CID_LOCAL = 1
VMADDR_CID_HOST = 2
_NAMED_CIDS = {"any": VMADDR_CID_ANY, "local": VMADDR_CID_LOCAL, "host": VMADDR_CID_HOST}


@attrs.frozen
class Address:
    """A parsed stream address. Build one with :func:`parse_address` or the ``unix``, ``tcp``
    and ``vsock`` constructors; ``str(address)`` gives back the URL."""

    scheme: Scheme
    #: Unix socket path (``unix``) or URL path (``ws``/``wss``).
    path: str = ""
    #: Host name or IP (``tcp``, ``ws``, ``wss``).
    host: str = ""
    #: Port (``tcp``, ``vsock``, ``ws``, ``wss``).
    port: int = 0
    #: Context id (``vsock``).
    cid: int = 0

    @classmethod
    def unix(cls, path: str | os.PathLike[str]) -> Address:
        """The address of a Unix socket at ``path``."""
        return cls("unix", path=os.fspath(path))

    @classmethod
    def tcp(cls, host: str, port: int) -> Address:
        """The address of a TCP endpoint."""
        return cls("tcp", host=host, port=port)

    @classmethod
    def vsock(cls, cid: int, port: int) -> Address:
        """The address of an AF_VSOCK endpoint."""
        return cls("vsock", cid=cid, port=port)

    def __str__(self) -> str:
        if self.scheme == "unix":
            # "unix://x" is the URL form of "unix:x": a path that itself starts with "//" needs
            # that form to survive a round trip
            return f"unix://{self.path}" if self.path.startswith("//") else f"unix:{self.path}"
        if self.scheme == "vsock":
            return f"vsock://{self.cid}:{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "tcp":
            return f"tcp://{host}:{self.port}"
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _port(text: str, original: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ConfigError(f"invalid address {original!r}: port {text!r} is not in 0..65535")
    return int(text)


def _host_port(rest: str, original: str) -> tuple[str, int, str]:
    """Split ``host:port[/path]`` (IPv6 hosts bracketed)."""
    path = ""
    if "/" in rest:
        rest, slash, tail = rest.partition("/")
        path = slash + tail
    if rest.startswith("["):
        host, bracket, tail = rest[1:].partition("]")
        if not bracket or not tail.startswith(":"):
            raise ConfigError(f"invalid address {original!r}: expected [ipv6]:port")
        port_text = tail[1:]
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon:
            raise ConfigError(f"invalid address {original!r}: expected host:port")
    if not host:
        raise ConfigError(f"invalid address {original!r}: empty host")
    return host, _port(port_text, original), path


def parse_address(text: str | Address) -> Address:
    """Parse an address URL; an :class:`Address` is returned unchanged.

    Raises:
        ConfigError: the text is not one of the supported forms; the message names it.
    """
    if isinstance(text, Address):
        return text
    scheme, colon, rest = text.partition(":")
    if not colon:
        raise ConfigError(
            f"invalid address {text!r}: expected unix:/path, tcp://host:port, "
            "vsock://cid:port or ws://host:port/path"
        )
    if scheme == "unix":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise ConfigError(f"invalid address {text!r}: empty socket path")
        return Address("unix", path=path)
    if not rest.startswith("//"):
        raise ConfigError(f"invalid address {text!r}: expected {scheme}://...")
    rest = rest[2:]
    if scheme == "tcp":
        host, port, path = _host_port(rest, text)
        if path:
            raise ConfigError(f"invalid address {text!r}: a tcp address has no path")
        return Address("tcp", host=host, port=port)
    if scheme in ("ws", "wss"):
        host, port, path = _host_port(rest, text)
        ws_scheme: Scheme = "wss" if scheme == "wss" else "ws"
        return Address(ws_scheme, host=host, port=port, path=path or "/")
    if scheme == "vsock":
        cid_text, colon, port_text = rest.partition(":")
        if not colon:
            raise ConfigError(f"invalid address {text!r}: expected vsock://cid:port")
        if cid_text in _NAMED_CIDS:
            cid = _NAMED_CIDS[cid_text]
        elif cid_text.isdigit() and int(cid_text) <= 0xFFFFFFFF:
            cid = int(cid_text)
        else:
            raise ConfigError(f"invalid address {text!r}: cid {cid_text!r} is not a 32-bit number")
        port = int(port_text) if port_text.isdigit() else -1
        if not 0 <= port <= 0xFFFFFFFF:
            raise ConfigError(f"invalid address {text!r}: port {port_text!r} is not 32-bit")
        return Address("vsock", cid=cid, port=port)
    raise ConfigError(
        f"invalid address {text!r}: unknown scheme {scheme!r} (expected unix, tcp, vsock, ws)"
    )


def _vsock_family() -> int:
    family = getattr(socket, "AF_VSOCK", None)
    if family is None:  # pragma: no cover - Linux always has it
        raise ConfigError("this platform has no AF_VSOCK support")
    return int(family)


async def _connect_vsock(address: Address) -> trio.SocketStream:
    sock = trio.socket.socket(_vsock_family(), socket.SOCK_STREAM)
    try:
        await sock.connect((address.cid, address.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def open_stream(
    address: str | Address, *, connect_timeout: float = 10.0
) -> trio.SocketStream:
    """Connect to ``address`` and return the stream.

    Raises:
        ConfigError: the address cannot be parsed, or is a WebSocket URL (use the WebSocket
            layer for those).
        ConnectError: the connection was refused, the socket does not exist, or
            ``connect_timeout`` seconds passed; the message names the address.
    """
    addr = parse_address(address)
    try:
        with trio.fail_after(connect_timeout):
            if addr.scheme == "unix":
                return await trio.open_unix_socket(addr.path)
            if addr.scheme == "tcp":
                return await trio.open_tcp_stream(addr.host, addr.port)
            if addr.scheme == "vsock":
                return await _connect_vsock(addr)
    except trio.TooSlowError:
        raise ConnectError(
            f"connecting to {addr} timed out after {connect_timeout:g} s", address=str(addr)
        ) from None
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
        raise ConnectError(f"cannot connect to {addr}: {reason}", address=str(addr)) from exc
    raise ConfigError(f"{addr} is a WebSocket URL: open it with the WebSocket transport")


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket file left by a previous listener (never a regular file or directory)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


async def open_listeners(
    address: str | Address, *, backlog: int | None = None
) -> list[trio.SocketListener]:
    """Bind and listen on ``address`` (port 0 picks a free port: read it from the listener).

    A stale Unix socket file at the path is replaced.

    Raises:
        ConfigError: the address cannot be parsed or cannot be listened on.
        ConnectError: binding failed (address in use, permission denied, ...).
    """
    addr = parse_address(address)
    try:
        if addr.scheme == "tcp":
            return await trio.open_tcp_listeners(addr.port, host=addr.host, backlog=backlog)
        if addr.scheme == "unix":
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _remove_stale_socket(addr.path)
                await sock.bind(addr.path)
                sock.listen(backlog if backlog is not None else socket.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            return [trio.SocketListener(sock)]
        if addr.scheme == "vsock":
            sock = trio.socket.socket(_vsock_family(), socket.SOCK_STREAM)
            try:
                await sock.bind((addr.cid, addr.port))
                sock.listen(backlog if backlog is not None else socket.SOMAXCONN)
            except BaseException:
                sock.close()
                raise
            return [trio.SocketListener(sock)]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConnectError(f"cannot listen on {addr}: {reason}", address=str(addr)) from exc
    raise ConfigError(f"cannot listen on {addr}: WebSocket URLs are served by the WebSocket layer")
