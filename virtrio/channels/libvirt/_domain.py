"""A domain by name on a (possibly reconnecting) connection, and QMP/QGA through libvirt.

:class:`LibvirtDomain` looks the domain up again after every reconnect, so handles built on it
(:class:`LibvirtQmp`, :class:`LibvirtQga`) stay valid through daemon restarts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from virtrio.channels._rpc import error_reply
from virtrio.channels.qga import QgaCommandError, QgaCommands
from virtrio.channels.qmp import QmpCommandError, QmpCommands
from virtrio.errors import ProtocolError, VirtrioTimeoutError
from virtrio.primitives import Deadline

from ._connection import LibvirtConnection
from ._domainxml import DomainXml, parse_domain_xml
from ._errors import LibvirtCallError
from ._stream import LibvirtStream, open_channel_stream, open_console_stream

__all__ = ["LibvirtDomain", "LibvirtQga", "LibvirtQmp"]

R = TypeVar("R")

#: Returns the connection to use, waiting for one up to the given number of seconds.
ConnectionSource = Callable[[float], Awaitable[LibvirtConnection]]


class LibvirtDomain:
    """The domain ``name`` on the connection ``source`` gives (looked up again per connection).

    Args:
        source: an async callable returning the current connection within a timeout (a
            :class:`~virtrio.nurseries.host.HostNursery`'s ``connection``), or a connection.
        name: the domain's name or UUID.
        call_timeout: the default deadline of each call, in seconds.
    """

    def __init__(
        self, source: ConnectionSource | LibvirtConnection, name: str, *, call_timeout: float = 30.0
    ) -> None:
        if isinstance(source, LibvirtConnection):
            fixed = source

            async def current(_timeout: float) -> LibvirtConnection:
                return fixed

            source = current
        self._source: ConnectionSource = source
        #: the domain's name (or UUID) as given
        self.name = name
        #: the default deadline of each call
        self.call_timeout = call_timeout
        self._cached: tuple[LibvirtConnection, Any] | None = None

    async def resolve(self, *, timeout: float | None = None) -> tuple[LibvirtConnection, Any]:
        """The current connection and its ``libvirt.virDomain`` for this domain."""
        limit = self.call_timeout if timeout is None else timeout
        deadline = Deadline.after(limit)
        connection = await self._source(limit)
        if self._cached is not None and self._cached[0] is connection:
            return self._cached
        remaining = deadline.remaining()
        dom = await connection.lookup(self.name, timeout=remaining)
        self._cached = (connection, dom)
        return self._cached

    async def call(
        self,
        fn: Callable[..., R],
        *args: Any,
        what: str | None = None,
        timeout: float | None = None,
    ) -> R:
        """Run ``fn(domain, *args)`` (a blocking libvirt call) in a worker thread."""
        limit = self.call_timeout if timeout is None else timeout
        deadline = Deadline.after(limit)
        connection, dom = await self.resolve(timeout=limit)
        remaining = deadline.remaining()
        label = f"{self.name}: {what or getattr(fn, '__name__', 'call')}"
        return await connection.call(fn, dom, *args, what=label, timeout=remaining)

    async def xml(self, *, timeout: float | None = None) -> DomainXml:
        """The live domain XML, parsed (QMP socket, Spice, channels)."""
        text = await self.call(lambda d: d.XMLDesc(0), what="XMLDesc", timeout=timeout)
        return parse_domain_xml(text)

    async def state(self, *, timeout: float | None = None) -> str:
        """libvirt's state name: ``running``, ``paused``, ``shutoff``, ..."""
        from ._summary import state_name

        value = await self.call(lambda d: d.state()[0], what="state", timeout=timeout)
        return state_name(value)

    async def open_channel(self, name: str, *, timeout: float | None = None) -> LibvirtStream:
        """Open the virtio-serial channel ``name`` through libvirt as a Trio stream."""
        connection, dom = await self.resolve(timeout=timeout)
        return await open_channel_stream(connection, dom, name)

    async def open_console(
        self, device: str | None = None, *, timeout: float | None = None
    ) -> LibvirtStream:
        """Open the domain's console through libvirt as a Trio stream."""
        connection, dom = await self.resolve(timeout=timeout)
        return await open_console_stream(connection, dom, device)


def _reply(text: str, command: str, error: type[QmpCommandError | QgaCommandError]) -> Any:
    try:
        reply = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"{command}: libvirt returned invalid JSON: {exc}") from None
    if not isinstance(reply, dict):
        raise ProtocolError(f"{command}: libvirt returned {reply!r}, not an object")
    if "error" in reply:
        failed = error_reply(None, reply["error"])
        if failed is None:
            raise ProtocolError(f"{command}: malformed error reply {text[:200]!r}")
        raise error(failed.error_class or "GenericError", failed.desc, command=command)
    if "return" not in reply:
        raise ProtocolError(f"{command}: reply without return: {text[:200]!r}")
    return reply["return"]


def _command(command: str, arguments: Mapping[str, Any] | None) -> str:
    message: dict[str, Any] = {"execute": command}
    if arguments:
        message["arguments"] = dict(arguments)
    return json.dumps(message)


class _ThroughLibvirt:
    def __init__(self, domain: LibvirtDomain) -> None:
        #: the domain commands go to
        self.domain = domain


class LibvirtQmp(_ThroughLibvirt, QmpCommands):
    """QMP through libvirt's ``qemuMonitorCommand``: the same interface as the socket client.

    Error replies raise :class:`~virtrio.channels.qmp.QmpCommandError` with QEMU's class and
    description, as on a direct socket. libvirt marks the domain "custom-monitor" (tainted)
    after the first command; that is libvirt's bookkeeping, not a fault.
    """

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` through libvirt and return its ``return`` value."""
        import libvirt_qemu

        text = await self.domain.call(
            libvirt_qemu.qemuMonitorCommand,
            _command(command, arguments),
            0,
            what=f"QMP {command}",
            timeout=timeout,
        )
        return _reply(text, command, QmpCommandError)


class LibvirtQga(_ThroughLibvirt, QgaCommands):
    """The guest agent through libvirt's ``qemuAgentCommand``: the socket client's interface.

    libvirt answers an agent error reply with an error whose message carries the agent's
    description; it is raised as :class:`~virtrio.channels.qga.QgaCommandError`. An agent
    that is not connected raises
    :class:`~virtrio.channels.libvirt.GuestAgentUnavailableError` (a timeout error).
    """

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` through libvirt and return its ``return`` value."""
        import libvirt_qemu

        limit = self.domain.call_timeout if timeout is None else timeout
        agent_seconds = max(1, math.ceil(limit)) if math.isfinite(limit) else -2
        try:
            text = await self.domain.call(
                libvirt_qemu.qemuAgentCommand,
                _command(command, arguments),
                agent_seconds,
                0,
                what=f"QGA {command}",
                # libvirt's own agent timeout fires first; ours is the backstop
                timeout=limit + 1 if math.isfinite(limit) else limit,
            )
        except LibvirtCallError as exc:
            message = str(exc)
            marker = "unable to execute QEMU agent command"
            if marker in message:
                desc = message.split(": ", 2)[-1]
                raise QgaCommandError("GenericError", desc, command=command) from None
            if "not supported" in message and "agent" in message:
                raise QgaCommandError("CommandNotFound", message, command=command) from None
            raise
        except VirtrioTimeoutError:
            raise
        return _reply(text, command, QgaCommandError)
