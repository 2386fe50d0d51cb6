"""``vm.mux(name)`` with ``protocol: xtransport``: a connection per stream, supervised by a probe.

xtransport frames messages but does not multiplex, so the handle does what
``virtrio mux send --transport xtransport`` does: **each** :meth:`XtransportMux.open_stream`
dials a connection of its own to the address and runs xtransport over it, as an
:class:`~virtrio.channels.xtransfer.XtransferStream` — a half-closeable stream like a yamux
one (``send_all``, ``receive_some``, ``send_eof``, ``async with``), whose half-close is an empty
message, plus ``send``/``receive`` of whole messages.

What the rest of a mux handle means here:

* **state, is_connected**: the supervisor holds one *probe* connection to the address (it sends
  nothing and discards anything the peer sends on it). CONNECTED while the probe is up; when
  the peer goes away (killed, restarted) the probe sees it at once: DISCONNECTED, and the
  supervisor redials with its backoff. ``open_stream()`` waits for CONNECTED up to its
  deadline, as with yamux. The probe takes one of the peer's connection slots, and a peer that
  closes idle connections makes the channel go down and be redialled each time it does.
* **a stream in flight** when the peer dies fails with
  :class:`~virtrio.channels.xtransfer.XtransferLaneLostError` (a
  :class:`~virtrio.errors.ConnectionLostError` and a ``trio.BrokenResourceError``): its
  connection ended before the peer ended the lane. Streams are independent: one failing or
  closed leaves the others alone.
* **accept_stream()**: the peer cannot open a stream toward us (this side only dials; there is
  no session to open one in): raises :class:`~virtrio.errors.LocalProtocolError` at once
  rather than wait forever.
* **ping()**: xtransport has no ping: raises :class:`~virtrio.errors.LocalProtocolError`; the
  state (the probe) is the liveness signal.

**Over a virtio-serial port** (``port:``), which carries one connection at a time, there is no
connection per stream: the supervised connection *is* the port's, and it carries **one lane at a
time**. ``open_stream()`` waits (up to its deadline) while another stream is open; closing a
stream ends its lane and reads to the peer's end of it, so the next stream starts clean. A peer
that does not end the lane within a moment leaves the connection out of step: it is closed, and
the supervisor reconnects. Close streams (``async with``): an abandoned one holds the port.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from virtrio.channels import Address, open_stream
from virtrio.channels.xtransfer import (
    XtransferChannel,
    XtransferConfig,
    XtransferError,
    XtransferStream,
    open_xtransfer,
)
from virtrio.errors import (
    ChannelUnavailableError,
    ConnectionLostError,
    LocalProtocolError,
    VirtrioTimeoutError,
)
from virtrio.primitives import Deadline, SupervisedHandle

__all__ = ["XtransportMux", "XtransportProbe", "open_xtransport_probe"]

log = logging.getLogger(__name__)


@attrs.define
class XtransportProbe:
    """The supervised connection of an xtransport mux: one idle connection to the address."""

    channel: XtransferChannel
    address: Address
    #: Why the probe ended (for the DISCONNECTED state change).
    closed_reason: BaseException | None = None
    #: True over a port: the connection carries the lanes, so the probe reads nothing itself.
    carries_lanes: bool = False

    @property
    def is_connected(self) -> bool:
        """Whether the probe connection is still up."""
        return self.channel.is_connected

    async def wait_closed(self) -> None:
        """Return once the peer closed the probe connection or it failed."""
        if self.carries_lanes:
            await self.channel.wait_closed()
            self.closed_reason = ConnectionLostError(
                f"{self.address}: the connection ended", address=str(self.address)
            )
            return
        try:
            while True:
                await self.channel.receive()
                log.debug("%s: a message on the probe connection, discarded", self.address)
        except trio.EndOfChannel:
            self.closed_reason = ConnectionLostError(
                f"{self.address}: the peer closed the probe connection", address=str(self.address)
            )
        except (ConnectionLostError, XtransferError) as exc:
            self.closed_reason = exc


@asynccontextmanager
async def open_xtransport_probe(
    address: Address,
    config: XtransferConfig,
    *,
    connect_timeout: float,
    carries_lanes: bool = False,
) -> AsyncIterator[XtransportProbe]:
    """Dial ``address`` and hold the connection as the probe of an xtransport mux (over a
    port, ``carries_lanes``: the connection its streams run on, one at a time)."""
    stream = await open_stream(address, connect_timeout=connect_timeout)
    async with open_xtransfer(stream, config) as channel:
        yield XtransportProbe(channel, address, carries_lanes=carries_lanes)


class XtransportMux(SupervisedHandle[XtransportProbe]):
    """An xtransport endpoint whose streams are connections of their own; see the module
    docstring. Made by the ``mux`` channel kind with ``protocol: xtransport``; its
    :meth:`run` (the channel's task) runs the supervisor and holds the streams' connections.

    Args:
        supervisor: keeps the probe connection up.
        address: where each stream dials.
        config: the xtransport options of every connection.
        call_timeout: the default deadline of a call, the wait for a reconnect included.
        connect_timeout: the deadline of one dial.
        one_lane: the address is a virtio-serial port: streams run one at a time on the
            supervised connection (see the module docstring).
    """

    def __init__(
        self,
        supervisor: Any,
        address: Address,
        config: XtransferConfig,
        call_timeout: float = math.inf,
        *,
        connect_timeout: float = 10.0,
        one_lane: bool = False,
    ) -> None:
        super().__init__(supervisor, call_timeout)
        #: Where every stream (and the probe) connects.
        self.address = address
        #: The xtransport options of every connection.
        self.config = config
        self.connect_timeout = connect_timeout
        self._nursery: trio.Nursery | None = None
        self._count = 0
        self._open = 0
        #: True over a virtio-serial port: one stream at a time, on the supervised connection.
        self.one_lane = one_lane
        self._lane_slot = trio.Semaphore(1)

    @property
    def open_streams(self) -> int:
        """How many streams have their connection open now."""
        return self._open

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the supervisor and host the streams' connections until cancelled (every stream
        still open is closed then)."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.supervisor.run)
                self._nursery = nursery
                task_status.started()
        finally:
            self._nursery = None

    async def open_stream(self, *, timeout: float | None = None) -> XtransferStream:
        """Dial a connection of its own and return it as a stream (once the probe says the
        peer is up, waiting for that up to ``timeout``).

        Raises:
            ChannelUnavailableError: the peer not up within the deadline, or the channel is not
                running.
            ConnectError: the dial failed (the peer went away since the probe connected).
        """
        _, deadline = await self._connected(timeout)
        if self.one_lane:
            return await self._open_lane(deadline)
        nursery = self._nursery
        if nursery is None:
            raise ChannelUnavailableError(f"channel {self.supervisor.name} is not running")
        self._count += 1
        name = f"{self.supervisor.name} stream {self._count}"
        connect_timeout = min(self.connect_timeout, max(deadline.remaining(), 0.0))
        lane: XtransferStream = await nursery.start(self._hold, name, connect_timeout)
        return lane

    async def _open_lane(self, deadline: Deadline) -> XtransferStream:
        acquired = False
        with trio.move_on_at(deadline.at):
            await self._lane_slot.acquire()
            acquired = True
        if not acquired:
            raise VirtrioTimeoutError(
                f"{self.supervisor.name}: another stream still holds the port (xtransport over"
                " a port carries one stream at a time: close it first)"
            )
        try:
            # (the connection may have been replaced while this call waited)
            probe, _ = await self._connected(deadline.remaining())
        except BaseException:
            self._lane_slot.release()
            raise
        self._count += 1
        self._open += 1

        def release() -> None:
            self._open -= 1
            self._lane_slot.release()

        return XtransferStream(
            probe.channel,
            name=f"{self.supervisor.name} stream {self._count}",
            keep_open=True,
            on_close=release,
        )

    async def _hold(
        self, name: str, connect_timeout: float, *, task_status: trio.TaskStatus[XtransferStream]
    ) -> None:
        stream = await open_stream(self.address, connect_timeout=connect_timeout)
        started = False
        self._open += 1
        try:
            async with open_xtransfer(stream, self.config) as channel:
                task_status.started(XtransferStream(channel, name=name))
                started = True
                # until the user closes the stream, the peer closes (xtransport has no
                # half-close: the connection is done; what arrived stays readable) or it fails
                await channel.wait_closed()
        except Exception:
            if not started:
                raise  # to open_stream()
            # one stream's failure is that stream's: its user sees it; the VM's channels
            # (this task's nursery) go on
            log.exception("%s: its connection failed", name)
        finally:
            self._open -= 1

    async def accept_stream(self, *, timeout: float | None = None) -> XtransferStream:
        """Not possible over xtransport: the peer cannot open a stream toward this side.

        Raises:
            LocalProtocolError: always, at once.
        """
        await trio.lowlevel.checkpoint()
        raise LocalProtocolError(
            f"{self.supervisor.name}: xtransport does not multiplex: the peer cannot open a"
            " stream toward us (only open_stream() dials); use protocol yamux to accept streams"
        )

    async def ping(self, *, timeout: float | None = None) -> float:
        """xtransport has no ping (the probe connection's state is the liveness signal).

        Raises:
            LocalProtocolError: always, at once.
        """
        await trio.lowlevel.checkpoint()
        raise LocalProtocolError(
            f"{self.supervisor.name}: xtransport has no ping: use state or wait_connected()"
        )
