"""libvirt connection URIs: parsed, validated, and written back canonically (sans-I/O).

Accepted forms (the seed's list, plus the local socket override libvirt itself allows)::

    qemu+ssh://[user@]host[:port]/system     remote over SSH (the default transport)
    host  or  user@host[:port]               shorthand for the line above
    qemu+tcp://host[:port]/system            remote, plain TCP (port 16509 by default)
    qemu+tls://host[:port]/system            remote, TLS (port 16514 by default)
    qemu:///system   qemu:///session         the local daemon
    qemu+unix:///system?socket=/path         a local daemon on a given socket
    test:///default  test:///abs/file.xml    libvirt's in-process test driver

Anything else raises :class:`LibvirtUriError` saying what is wrong and what is accepted.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode

import attrs

from virtrio.errors import ConfigError

from ._errors import LibvirtError

__all__ = ["LibvirtUri", "LibvirtUriError", "parse_libvirt_uri"]

DRIVERS = ("qemu", "test")
TRANSPORTS = ("ssh", "tcp", "tls", "unix", "libssh", "libssh2")
REMOTE_TRANSPORTS = ("ssh", "tcp", "tls", "libssh", "libssh2")
QEMU_PATHS = ("/system", "/session")
#: Query parameters libvirt's remote driver understands.
PARAMETERS = frozenset(
    {
        "name",
        "command",
        "socket",
        "netcat",
        "keyfile",
        "no_verify",
        "no_tty",
        "pkipath",
        "known_hosts",
        "known_hosts_verify",
        "sshauth",
        "tls_priority",
        "mode",
        "proxy",
    }
)
_FORMS = (
    "qemu+ssh://[user@]host[:port]/system, qemu+tcp://host[:port]/system, "
    "qemu+tls://host[:port]/system, qemu:///system, qemu:///session, test:///default"
)
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)$")


class LibvirtUriError(LibvirtError, ConfigError):
    """A libvirt URI that virtrio does not accept; the message says why and lists the forms."""

    def __init__(self, uri: str, reason: str) -> None:
        super().__init__(f"invalid libvirt URI {uri!r}: {reason} (accepted: {_FORMS})")
        self.uri = uri
        self.reason = reason


@attrs.frozen
class LibvirtUri:
    """A validated libvirt URI. ``str()`` gives the canonical text libvirt is opened with."""

    #: ``qemu`` or ``test``
    driver: str
    #: ``ssh``, ``tcp``, ``tls``, ``unix``, ... or None (local, or libvirt's default for a host)
    transport: str | None
    #: ``/system``, ``/session``, ``/default``, or a test-driver file
    path: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    #: query parameters, in order
    params: tuple[tuple[str, str], ...] = ()

    @property
    def is_remote(self) -> bool:
        """Whether the URI names another host."""
        return self.host is not None

    @property
    def key(self) -> str:
        """What identifies the host connection (one per key): the canonical URI."""
        return str(self)

    def __str__(self) -> str:
        scheme = self.driver + (f"+{self.transport}" if self.transport else "")
        authority = ""
        if self.host is not None:
            authority = (f"{quote(self.user, safe='')}@" if self.user else "") + self.host
            if self.port is not None:
                authority += f":{self.port}"
        query = f"?{urlencode(self.params, safe='/', quote_via=quote)}" if self.params else ""
        return f"{scheme}://{authority}{self.path}{query}"


def _shorthand(text: str) -> str | None:
    """``[user@]host[:port]`` → the SSH URI to the system daemon (the seed's default)."""
    if "://" in text or "/" in text:
        return None
    return f"qemu+ssh://{text}/system"


def parse_libvirt_uri(text: str) -> LibvirtUri:
    """Parse and validate ``text``; see the module docstring for the accepted forms.

    Raises:
        LibvirtUriError: with the reason (unknown driver or transport, missing or unexpected
            host, bad port, unknown path or parameter, ...).
    """
    original = text
    if not isinstance(text, str) or not text:
        raise LibvirtUriError(str(original), "empty")
    if text != text.strip() or any(c.isspace() for c in text):
        raise LibvirtUriError(original, "contains whitespace")
    text = _shorthand(text) or text
    match = _URI.match(text)
    if match is None:
        raise LibvirtUriError(original, "not of the form driver[+transport]://[host]/path")
    scheme, authority, rest = match["scheme"].lower(), match["authority"], match["rest"]
    driver, _, transport_text = scheme.partition("+")
    transport = transport_text or None
    if driver not in DRIVERS:
        raise LibvirtUriError(original, f"unsupported driver {driver!r} (use qemu or test)")
    if transport is not None and transport not in TRANSPORTS:
        raise LibvirtUriError(original, f"unknown transport {transport!r}")
    if "#" in rest:
        raise LibvirtUriError(original, "a fragment (#...) is not allowed")
    path, _, query = rest.partition("?")

    user: str | None = None
    host: str | None = None
    port: int | None = None
    if authority:
        if "@" in authority:
            user, _, authority = authority.rpartition("@")
            if not _USER.match(user):
                raise LibvirtUriError(original, f"invalid user name {user!r}")
        host_text, port_text = authority, None
        if authority.startswith("["):
            close = authority.find("]")
            if close < 0:
                raise LibvirtUriError(original, "unclosed '[' in an IPv6 host")
            host_text, tail = authority[: close + 1], authority[close + 1 :]
            if tail:
                if not tail.startswith(":"):
                    raise LibvirtUriError(original, f"unexpected {tail!r} after the host")
                port_text = tail[1:]
        elif ":" in authority:
            host_text, _, port_text = authority.partition(":")
        if not host_text or not _HOST.match(host_text):
            raise LibvirtUriError(original, f"invalid host {host_text!r}")
        host = host_text
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
                raise LibvirtUriError(original, f"port {port_text!r} is not in 1..65535")
            port = int(port_text)

    if transport in REMOTE_TRANSPORTS and host is None:
        raise LibvirtUriError(original, f"transport {transport!r} needs a host")
    if transport == "unix" and host is not None:
        raise LibvirtUriError(original, "the unix transport is local: no host allowed")
    if user is not None and transport not in ("ssh", "libssh", "libssh2", None):
        raise LibvirtUriError(original, f"a user name is only meaningful over SSH, not {transport}")
    if driver == "test" and host is not None:
        raise LibvirtUriError(original, "the test driver is in-process: no host allowed")

    if driver == "qemu" and path not in QEMU_PATHS:
        raise LibvirtUriError(
            original, f"path {path or '(none)'!r} is not /system or /session for qemu"
        )
    if driver == "test" and path != "/default" and not (path.startswith("/") and len(path) > 1):
        raise LibvirtUriError(original, "the test driver needs /default or an absolute file path")

    params: list[tuple[str, str]] = []
    if query:
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise LibvirtUriError(original, f"malformed query {query!r}") from None
        for name, value in pairs:
            if name not in PARAMETERS:
                known = ", ".join(sorted(PARAMETERS))
                raise LibvirtUriError(original, f"unknown parameter {name!r} (known: {known})")
            params.append((name, value))
    return LibvirtUri(driver, transport, path, host, user, port, tuple(params))
