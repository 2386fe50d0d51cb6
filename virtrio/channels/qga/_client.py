"""The guest-agent client over a socket: :func:`open_qga`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from virtrio.channels._addresses import Address, open_stream, parse_address
from virtrio.channels._jsonstream import DEFAULT_MAX_MESSAGE_SIZE
from virtrio.channels._rpc import RpcClient, RpcConnection
from virtrio.errors import ConnectError, ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Deadline, open_service_nursery

from ._commands import QgaCommands
from ._protocol import SYNC_PREFIX, QgaCommandError, QgaProtocol, QgaProtocolError

__all__ = ["QgaClient", "open_qga"]


class QgaClient(RpcClient, QgaCommands):
    """A connected guest-agent session. Create it with :func:`open_qga`.

    The stream is resynchronised (``guest-sync-delimited``) when it opens and again before the
    next call after any call timed out, so a late reply can never be taken for another's.
    """

    def __init__(
        self,
        connection: RpcConnection,
        protocol: QgaProtocol,
        call_timeout: float,
        sync_timeout: float,
    ) -> None:
        super().__init__(connection, call_timeout)
        self._protocol = protocol
        #: Deadline of each resynchronisation after the first.
        self.sync_timeout = sync_timeout
        self._need_sync = True
        self._sync_lock = trio.Lock()

    async def sync(self, *, timeout: float | None = None) -> None:
        """Resynchronise the stream with ``guest-sync-delimited``.

        Raises:
            VirtrioTimeoutError: the agent did not answer (is it running in the guest?).
            QgaProtocolError: it answered with the wrong token.
        """
        async with self._sync_lock:
            token = self._protocol.sync_token()
            reply = await self._connection.request(
                "guest-sync-delimited",
                {"id": token},
                timeout=self.sync_timeout if timeout is None else timeout,
                prefix=SYNC_PREFIX,
            )
            if not reply.ok:
                raise QgaCommandError(reply.error_class, reply.desc, command="guest-sync-delimited")
            if reply.value != token:
                raise QgaProtocolError(
                    f"guest-sync-delimited answered {reply.value!r}, expected {token}"
                )
            self._need_sync = False

    async def execute(
        self,
        command: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Run ``command`` in the guest agent and return its ``return`` value.

        Raises:
            QgaCommandError: the agent answered with an error.
            ConnectionLostError: the connection went away before the reply.
            VirtrioTimeoutError: no reply within ``timeout`` (default :attr:`call_timeout`);
                the next call resynchronises first.
        """
        limit = self.call_timeout if timeout is None else timeout
        with trio.move_on_after(limit) as scope:
            if self._need_sync:
                await self.sync()
            try:
                reply = await self._connection.request(
                    command, dict(arguments) if arguments else None
                )
            except BaseException:
                self._need_sync = True
                raise
        if scope.cancelled_caught:
            self._need_sync = True
            raise VirtrioTimeoutError(
                f"guest agent command {command!r} to {self.address}: no reply within {limit:g} s"
            )
        if not reply.ok:
            raise QgaCommandError(reply.error_class, reply.desc, command=command)
        return reply.value


@asynccontextmanager
async def open_qga(
    address: str | Address,
    *,
    connect_timeout: float = 10.0,
    call_timeout: float = 30.0,
    sync_timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[QgaClient]:
    """Connect to a guest agent's socket, resynchronise, and yield the client.

    ``address`` is the host end of the agent's virtio-serial port (QEMU's chardev socket, e.g.
    ``unix:/run/vm/qga.sock``) or a qemu-ga listening on the host (``qemu-ga -m unix-listen``).

    Args:
        connect_timeout: deadline for connecting and the first resynchronisation together.
        call_timeout: per-call deadline when a call gives none.
        sync_timeout: deadline for each later resynchronisation.

    Raises:
        ConnectError: the socket could not be reached, or the agent did not answer the
            resynchronisation in time (not running yet in the guest, or another client holds it).
    """
    addr = parse_address(address)
    deadline = Deadline.after(connect_timeout)
    stream = await open_stream(addr, connect_timeout=connect_timeout)
    protocol = QgaProtocol(max_message_size=max_message_size)
    connection = RpcConnection(stream, protocol, name="guest agent", address=str(addr))
    client = QgaClient(connection, protocol, call_timeout, sync_timeout)
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(connection.run_reader)
            try:
                await client.sync(timeout=deadline.remaining())
            except (VirtrioTimeoutError, ConnectionLostError, QgaProtocolError) as exc:
                raise ConnectError(
                    f"guest agent at {addr} did not answer guest-sync-delimited: {exc}",
                    address=str(addr),
                ) from exc
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        # owns the stream from the moment it exists, whatever is cancelled where
        with trio.CancelScope(shield=True):
            await connection.aclose()
