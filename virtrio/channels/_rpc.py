"""The Trio shell shared by the QMP and guest-agent clients: one stream, one reader task,
requests correlated to replies by id (the :class:`~._correlator.Correlator` the PTY client
uses too).

A protocol core (sans-I/O) turns bytes into events and commands into bytes; this class owns the
stream and runs the reader task that feeds the core. When the connection goes, every pending
call fails at once with :class:`~virtrio.errors.ConnectionLostError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import trio

from virtrio.errors import ConnectionLostError, ProtocolError

from ._correlator import Correlator
from ._jsonstream import Reply, error_reply
from ._sansio import NEED_DATA, ConnectionClosed, NeedData

__all__ = ["Reply", "RpcClient", "RpcConnection", "RpcProtocol", "error_reply"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536


class RpcProtocol(Protocol):
    """What :class:`RpcConnection` needs from a sans-I/O protocol core."""

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed received bytes (``b""`` at end of stream)."""

    def next_event(self) -> object | NeedData:
        """The next event (a :class:`Reply`, :class:`ConnectionClosed` at the end of input, or
        a protocol-specific event) or ``NEED_DATA``."""

    def send_command(self, command: str, arguments: dict[str, Any] | None) -> tuple[Any, bytes]:
        """Allocate an id and encode a command; returns ``(id, bytes)``."""


class RpcConnection(Correlator[Reply]):
    """One connection of a JSON RPC protocol (QMP or the guest agent) over a Trio stream: a
    :class:`~._correlator.Correlator` with the reader task that feeds the core.

    Args:
        stream: the connected stream; closed by :meth:`aclose`.
        protocol: the sans-I/O core.
        name: the protocol's name for messages (``"QMP"``).
        address: the peer's address for messages.
        on_event: called (synchronously, in the reader task) with every event that is not a
            :class:`Reply`.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        protocol: RpcProtocol,
        *,
        name: str,
        address: str,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        super().__init__(stream, name=name, address=address)
        self.protocol = protocol
        self._on_event = on_event
        # a core that reuses ids (QMP) takes back the id of a command never sent
        self._release: Callable[[Any], None] | None = getattr(protocol, "release", None)

    async def run_reader(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The reader task: feed the core, complete slots, hand other events on. Never raises:
        a lost connection or a protocol violation ends it and fails pending calls."""
        task_status.started()
        try:
            await self.read_all(self._receive, _RECEIVE_SIZE)
        except ProtocolError as exc:
            log.warning("%s %s: %s; closing the connection", self.name, self.address, exc)
            self.lose(exc)
        except (trio.BrokenResourceError, OSError) as exc:
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} lost: {exc}", address=self.address
                )
            )
        except trio.ClosedResourceError:
            self.lose(self._closed_locally())
        finally:
            if self.closed_reason is None:  # cancelled
                self.lose(self._closed_locally())

    def _receive(self, data: bytes | bytearray) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        while (event := protocol.next_event()) is not NEED_DATA:
            if isinstance(event, Reply):
                self._complete(event)
            elif isinstance(event, ConnectionClosed):
                break
            elif self._on_event is not None:
                self._on_event(event)
        if not data:  # the core said ConnectionClosed (or would have failed)
            self.lose(
                ConnectionLostError(
                    f"{self.name} connection to {self.address} closed by the peer",
                    address=self.address,
                )
            )

    def _unsent(self, ident: Any) -> None:
        if self._release is not None:
            self._release(ident)

    def _closed_locally(self) -> ConnectionLostError:
        return ConnectionLostError(
            f"{self.name} connection to {self.address} was closed", address=self.address
        )

    def _complete(self, reply: Reply) -> None:
        if type(reply.id) is not int:
            # We number every request with an integer and the peer echoes it, so any other id
            # (an object or array, which cannot even be looked up, or true or 1.0, which would
            # match request 1) answers nothing we sent: the peer is broken, not merely late.
            raise ProtocolError(
                f"{self.name} reply with a malformed id {reply.id!r:.60}: every request of ours "
                "has an integer id"
            )
        self.complete(reply.id, reply)

    async def send_bytes(self, data: bytes) -> None:
        """Write raw bytes as one unit (see :meth:`~._correlator.Correlator.send`).

        Raises:
            ConnectionLostError: the connection is closed or the write failed.
        """
        await self.send(data)

    async def request(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        *,
        timeout: float = math.inf,
        prefix: bytes = b"",
    ) -> Reply:
        """Send a command and wait for its reply.

        Raises:
            ConnectionLostError: the connection was lost before the reply came.
            VirtrioTimeoutError: no reply within ``timeout`` seconds (a late reply is dropped).
        """
        if self.closed_reason is not None:
            raise self.lost_error()
        ident, data = self.protocol.send_command(command, arguments)
        return await self.call(
            ident, prefix + data if prefix else data, what=f"command {command!r}", timeout=timeout
        )


class RpcClient:
    """Base of the clients built on one :class:`RpcConnection`: its state, its address, and
    closing it. Subclasses add the protocol's calls."""

    def __init__(self, connection: RpcConnection, call_timeout: float) -> None:
        self._connection = connection
        #: Timeout applied when a call passes none.
        self.call_timeout = call_timeout

    @property
    def address(self) -> str:
        """The peer's address."""
        return self._connection.address

    @property
    def is_connected(self) -> bool:
        """True until the connection is lost or closed."""
        return self._connection.is_connected

    @property
    def closed_reason(self) -> BaseException | None:
        """Why the connection ended, once it has."""
        return self._connection.closed_reason

    @property
    def in_flight(self) -> int:
        """Calls sent to the peer and still waiting for their reply (for tests and metrics)."""
        return self._connection.in_flight

    async def wait_closed(self) -> None:
        """Return once the connection has closed or failed."""
        await self._connection.wait_closed()

    async def aclose(self) -> None:
        """Close the connection; pending calls fail with ConnectionLostError."""
        await self._connection.aclose()
