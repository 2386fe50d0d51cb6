"""The QMP client over a socket: :func:`open_qmp`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from virtrio.channels._addresses import Address, open_stream, parse_address
from virtrio.channels._jsonstream import DEFAULT_MAX_MESSAGE_SIZE
from virtrio.channels._rpc import RpcClient, RpcConnection
from virtrio.errors import ConnectError, ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Deadline, Fanout, Subscription, open_service_nursery

from ._commands import QmpCommands
from ._protocol import (
    QmpCommandError,
    QmpEvent,
    QmpGreeting,
    QmpLocalProtocolError,
    QmpProtocol,
    QmpState,
)

__all__ = ["QmpClient", "open_qmp"]


class QmpClient(RpcClient, QmpCommands):
    """A connected, negotiated QMP session. Create it with :func:`open_qmp`.

    Any number of tasks may call :meth:`execute` at once: each request carries an id and waits
    on its own slot.
    """

    def __init__(
        self,
        connection: RpcConnection,
        protocol: QmpProtocol,
        events: Fanout[QmpEvent],
        call_timeout: float,
    ) -> None:
        super().__init__(connection, call_timeout)
        self._protocol = protocol
        self._events = events

    @property
    def greeting(self) -> QmpGreeting:
        """QEMU's greeting (version and capabilities)."""
        assert self._protocol.greeting is not None
        return self._protocol.greeting

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` and return its ``return`` value.

        Raises:
            QmpCommandError: QEMU answered with an error.
            ConnectionLostError: the connection went away before the reply.
            VirtrioTimeoutError: no reply within ``timeout`` (default :attr:`call_timeout`).
        """
        reply = await self._connection.request(
            command,
            dict(arguments) if arguments else None,
            timeout=self.call_timeout if timeout is None else timeout,
        )
        if not reply.ok:
            raise QmpCommandError(reply.error_class, reply.desc, command=command)
        return reply.value

    def events(self, *names: str, max_queue: int = 1024) -> Subscription[QmpEvent]:
        """Listen for events (all, or only those named), each listener with its own bounded
        queue. Use as ``with qmp.events("STOP") as listener: async for event in listener``.

        When the connection is lost, the listener raises
        :class:`~virtrio.errors.ConnectionLostError` after the events already queued: it never
        goes silent. A listener that falls behind by ``max_queue`` events loses the newest ones,
        counted in its :meth:`~virtrio.nurseries.Subscription.take_pressure` notice.
        """
        wanted = frozenset(names)
        accept = (lambda event: event.name in wanted) if wanted else None
        return self._events.subscribe(max_queue=max_queue, accept=accept)


@asynccontextmanager
async def open_qmp(
    address: str | Address,
    *,
    connect_timeout: float = 10.0,
    call_timeout: float = 30.0,
    negotiate: bool = True,
    event_fanout: Fanout[QmpEvent] | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[QmpClient]:
    """Connect to a QMP socket, read the greeting, negotiate capabilities, yield the client.

    Args:
        address: ``unix:/path`` or ``tcp://host:port``.
        connect_timeout: deadline for connecting, the greeting and negotiation together.
        call_timeout: per-call deadline when a call gives none (``math.inf`` for none).
        negotiate: send ``qmp_capabilities`` (leave True unless you do it yourself), enabling
            OOB when QEMU offers it, as qemu.qmp does (commands still run in order).
        event_fanout: publish events here instead of the client's own fanout (a VM nursery
            passes one that outlives reconnects; it is then not closed with the connection).
        max_message_size: the largest message accepted from QEMU.

    Raises:
        ConnectError: the connection, greeting or negotiation failed or timed out.
    """
    addr = parse_address(address)
    protocol = QmpProtocol(max_message_size=max_message_size)
    owns_events = event_fanout is None
    events: Fanout[QmpEvent] = Fanout(max_queue=1024) if event_fanout is None else event_fanout
    wakeup = trio.Event()  # set by the greeting, or by the connection closing first

    def on_event(event: object) -> None:
        if isinstance(event, QmpGreeting):
            wakeup.set()
        elif isinstance(event, QmpEvent):
            events.publish(event)

    deadline = Deadline.after(connect_timeout)
    stream = await open_stream(addr, connect_timeout=connect_timeout)
    connection = RpcConnection(stream, protocol, name="QMP", address=str(addr), on_event=on_event)
    client = QmpClient(connection, protocol, events, call_timeout)
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(connection.run_reader)
            nursery.start_soon(_on_closed, connection, wakeup, events if owns_events else None)
            await _handshake(client, protocol, wakeup, negotiate, deadline, addr)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # owns the stream from the moment it exists, whatever is cancelled where
        with trio.CancelScope(shield=True):
            await connection.aclose()
        if owns_events:
            events.close(connection.closed_reason)


async def _on_closed(
    connection: RpcConnection, wakeup: trio.Event, events: Fanout[QmpEvent] | None
) -> None:
    await connection.wait_closed()
    wakeup.set()
    if events is not None:  # listeners of this connection's own events hear of the loss now
        events.close(connection.closed_reason)


async def _handshake(
    client: QmpClient,
    protocol: QmpProtocol,
    wakeup: trio.Event,
    negotiate: bool,
    deadline: Deadline,
    addr: Address,
) -> None:
    with trio.move_on_at(deadline.at):
        await wakeup.wait()
    if protocol.greeting is None:
        reason = client.closed_reason
        why = f": {reason}" if reason else " in time (is another client connected?)"
        raise ConnectError(f"no QMP greeting from {addr}{why}", address=str(addr))
    if not negotiate:
        return
    if protocol.state is QmpState.NEGOTIATING:
        # the core knows the negotiation: it is READY once its reply came
        try:
            # OOB, when QEMU offers it (as qemu.qmp does): QEMU then reads ahead up to eight
            # commands while its main thread runs the one before, instead of stopping reading
            # after each command until it has answered it; commands still run, and are
            # answered, in the order sent
            greeting = protocol.greeting
            enable = {"enable": ["oob"]} if greeting and "oob" in greeting.capabilities else None
            await client.execute("qmp_capabilities", enable, timeout=deadline.remaining())
        except (
            ConnectionLostError,
            VirtrioTimeoutError,
            QmpCommandError,
            QmpLocalProtocolError,
        ) as exc:
            raise ConnectError(
                f"QMP negotiation with {addr} failed: {exc}", address=str(addr)
            ) from exc
    _check_ready(client, protocol, addr)


def _check_ready(client: QmpClient, protocol: QmpProtocol, addr: Address) -> None:
    if protocol.state is not QmpState.READY:
        reason = client.closed_reason or protocol.error or protocol.state.value
        raise ConnectError(f"QMP negotiation with {addr} failed: {reason}", address=str(addr))
