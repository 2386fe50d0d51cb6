"""libvirt's errors translated into virtrio's hierarchy."""

from __future__ import annotations

from typing import Any

from virtrio.errors import (
    AuthenticationError,
    CommandError,
    ConnectError,
    ConnectionLostError,
    LocalProtocolError,
    VirtrioError,
    VirtrioTimeoutError,
)

__all__ = [
    "DomainNotFoundError",
    "GuestAgentUnavailableError",
    "LibvirtAuthenticationError",
    "LibvirtCallError",
    "LibvirtError",
    "LibvirtLocalError",
    "LibvirtUnsupportedError",
    "translate_error",
]

# libvirt's virErrorNumber values used here (stable ABI)
VIR_ERR_NO_SUPPORT = 3
VIR_ERR_NO_CONNECT = 5
VIR_ERR_OPERATION_INVALID = 55
VIR_ERR_SYSTEM_ERROR = 38
VIR_ERR_RPC = 39
VIR_ERR_NO_DOMAIN = 42
VIR_ERR_OPERATION_TIMEOUT = 68
VIR_ERR_AUTH_FAILED = 45
VIR_ERR_OPERATION_DENIED = 54
VIR_ERR_AUTH_CANCELLED = 79
VIR_ERR_ACCESS_DENIED = 88
VIR_ERR_AUTH_UNAVAILABLE = 94
_AUTH_CODES = (
    VIR_ERR_AUTH_FAILED,
    VIR_ERR_OPERATION_DENIED,
    VIR_ERR_AUTH_CANCELLED,
    VIR_ERR_ACCESS_DENIED,
    VIR_ERR_AUTH_UNAVAILABLE,
)
VIR_ERR_AGENT_UNRESPONSIVE = 86
VIR_ERR_AGENT_UNSYNCED = 97
VIR_ERR_AGENT_COMMAND_TIMEOUT = 99
VIR_ERR_INTERNAL_ERROR = 1
VIR_FROM_RPC = 7
VIR_FROM_REMOTE = 13


class LibvirtError(VirtrioError):
    """Base of the libvirt errors (each is also one of the generic classes of
    :mod:`virtrio.errors`)."""


class LibvirtCallError(LibvirtError, CommandError):
    """libvirt answered a call with an error no more specific virtrio error describes.

    A :class:`~virtrio.errors.CommandError` whose ``error_class`` is libvirt's error name
    (``VIR_ERR_...``, or the number when this libvirt does not name it), ``desc`` its message
    and ``command`` the call.

    Attributes:
        code: libvirt's error code (``virErrorNumber``).
        domain: libvirt's error domain (``virErrorDomain``: which part of libvirt failed).
    """

    def __init__(
        self, message: str, *, code: int, domain: int, command: str = "", desc: str = ""
    ) -> None:
        VirtrioError.__init__(self, message)  # the message as libvirt put it, not re-formatted
        self.error_class = _error_name(code)
        self.desc = desc or message
        self.command = command
        self.code = code
        self.domain = domain


class DomainNotFoundError(LibvirtCallError, LookupError):
    """No domain of that name (or id/UUID) exists on the host."""


class LibvirtLocalError(LibvirtError, LocalProtocolError):
    """A call the connection's own settings refuse, before anything is sent (domain events on
    a connection opened with ``domain_events=False``)."""


class LibvirtUnsupportedError(LibvirtCallError, LocalProtocolError):
    """The connection's driver does not support this call (``test:///`` has no QMP, say)."""


class LibvirtAuthenticationError(LibvirtError, ConnectError, AuthenticationError):
    """libvirt refused our credentials or denied access to the connection. Permanent: a host
    nursery stops (FAILED) instead of retrying."""


class GuestAgentUnavailableError(LibvirtError, VirtrioTimeoutError):
    """libvirt says the guest agent is not connected or did not answer in time."""


def _error_name(code: int) -> str:
    try:
        import libvirt
    except ImportError:  # pragma: no cover - the libvirt extra is what raises these
        return str(code)
    for name, value in vars(libvirt).items():
        if name.startswith("VIR_ERR_") and value == code:
            return str(name)
    return str(code)


def _is_connection_failure(code: int, domain: int, message: str) -> bool:
    if code in (VIR_ERR_NO_CONNECT, VIR_ERR_RPC):
        return True
    if domain in (VIR_FROM_RPC, VIR_FROM_REMOTE) and code in (
        VIR_ERR_SYSTEM_ERROR,
        VIR_ERR_INTERNAL_ERROR,
        VIR_ERR_OPERATION_INVALID,
    ):
        return True
    return "client socket is closed" in message or "End of file while reading" in message


def translate_error(exc: Any, what: str, *, uri: str, connecting: bool = False) -> VirtrioError:
    """The virtio error for the ``libvirt.libvirtError`` ``exc`` raised while doing ``what``."""
    code = int(exc.get_error_code() or 0)
    domain = int(exc.get_error_domain() or 0)
    desc = str(exc.get_error_message() or exc)
    message = f"{what}: {desc}"

    def call_error(cls: type[LibvirtCallError]) -> LibvirtCallError:
        return cls(message, code=code, domain=domain, command=what, desc=desc)

    if connecting:
        if code in _AUTH_CODES:
            return LibvirtAuthenticationError(f"libvirt {uri}: {message}", address=uri)
        return ConnectError(f"libvirt {uri}: {message}", address=uri)
    if code == VIR_ERR_NO_DOMAIN:
        return call_error(DomainNotFoundError)
    if code == VIR_ERR_NO_SUPPORT:
        return call_error(LibvirtUnsupportedError)
    if code in (VIR_ERR_AGENT_UNRESPONSIVE, VIR_ERR_AGENT_UNSYNCED, VIR_ERR_AGENT_COMMAND_TIMEOUT):
        return GuestAgentUnavailableError(message)
    if code == VIR_ERR_OPERATION_TIMEOUT:
        return VirtrioTimeoutError(message)
    if _is_connection_failure(code, domain, message):
        return ConnectionLostError(f"libvirt {uri}: {message}", address=uri)
    return call_error(LibvirtCallError)
