"""The GDB client over a socket: :func:`open_gdb` and :class:`GdbClient`."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.channels._addresses import Address, open_stream, parse_address
from virtrio.channels._jsonstream import NeedData
from virtrio.errors import ConfigError, ConnectError, ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Deadline, Fanout, Subscription, open_service_nursery

from ._errors import GdbCommandError, GdbError, GdbProtocolError, GdbUnsupportedError
from ._execution import GdbExecution
from ._protocol import GdbProtocol, ProtocolState, Reply, ResumeRefused
from ._replies import ConsoleOutput, GdbEvent, Stopped, StopReply, ThreadId, parse_stop_reply
from ._target import Byteorder

__all__ = ["GdbClient", "open_gdb"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
#: The most ``O`` output one ``monitor`` call collects (QEMU's ``info mtree`` is ~100 KiB).
MAX_MONITOR_OUTPUT = 16 << 20


class _Slot:
    """One request on the wire: ``wake`` wakes its caller (reply, loss or deadline); ``replied``
    is set only once the stub has answered (or the connection is gone), which a later request
    waits for so that a late reply is never taken for its own."""

    __slots__ = ("deadline", "output", "replied", "reply", "wake")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.wake = trio.Event()
        self.replied = trio.Event()
        self.reply: bytes | None = None
        self.output = bytearray()


class GdbClient(GdbExecution):
    """A connected GDB remote-protocol session. Create it with :func:`open_gdb`.

    The protocol carries one request at a time and the stub's next packet is its answer, so
    requests from several tasks are queued (one on the wire at a time). While the target runs
    (after :meth:`continue_`) only :meth:`interrupt` and :meth:`wait_stop` may be used; the stop
    reply and any console output arrive through :meth:`events` as well.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        call_timeout: float,
        events: Fanout[GdbEvent],
        byteorder: Byteorder | None,
    ) -> None:
        super().__init__(byteorder)
        self._stream = stream
        # the socket's descriptor (non-blocking, as Trio keeps it) for the fast paths
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None
        self._reads_in_a_row = 0
        self.address = address
        #: Deadline (seconds) of a call that passes ``timeout=None``.
        self.call_timeout = call_timeout
        self._events = events
        self._protocol = GdbProtocol()
        # One request on the wire at a time: the RSP has no request ids, the next packet from
        # the stub answers the last request, so correlating by arrival needs this queue.
        self._request_lock = trio.Lock()
        # The reader (acks) and callers (requests, \x03) both write.
        self._send_lock = trio.Lock()
        self._slot: _Slot | None = None
        # the request deadlines' timer: one long-lived scope in the watchdog task, moved only
        # when it must fire earlier (a cancel scope per request would cost more than the
        # stub's whole round trip)
        self._watch_scope: trio.CancelScope | None = None
        self._watch_deadline = math.inf
        self._stopped = trio.Event()
        self._stopped.set()
        self._last_stop: StopReply | None = None
        self._resume_error: GdbError | None = None
        self._quiet = False  # the stop of an internal step (off a breakpoint) is not published
        self.closed_reason: BaseException | None = None
        self._closed = trio.Event()

    # --- state --------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True until the connection is lost or closed."""
        return self.closed_reason is None

    @property
    def is_running(self) -> bool:
        """True from :meth:`continue_` until the target's stop reply arrives."""
        return self._protocol.state is ProtocolState.RUNNING

    @property
    def last_stop(self) -> StopReply | None:
        """The latest stop reply (the answer to ``?`` at connect, then each stop)."""
        return self._last_stop

    async def wait_closed(self) -> None:
        """Return once the connection has closed or failed (see :attr:`closed_reason`)."""
        await self._closed.wait()

    def events(self, *, max_queue: int = 1024) -> Subscription[GdbEvent]:
        """Stop replies and console output from now on, each listener with its own queue:
        ``with gdb.events() as sub: event = await sub.receive()``. When the connection is lost
        the listener raises :class:`~virtrio.errors.ConnectionLostError` after what it holds."""
        return self._events.subscribe(max_queue=max_queue)

    def _deadline(self, timeout: float | None) -> float:
        return self.call_timeout if timeout is None else timeout

    def _lost(self) -> ConnectionLostError:
        reason = self.closed_reason
        return ConnectionLostError(
            f"GDB connection to {self.address} lost: {reason}", address=self.address
        )

    # --- the wire ------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if self.closed_reason is not None:
            raise self._lost()
        lock = self._send_lock
        try:
            lock.acquire_nowait()  # the usual case, without a trip through the scheduler
        except trio.WouldBlock:
            await lock.acquire()
        try:
            sent = 0
            if self._fd is not None:
                # straight into the socket buffer, which takes a packet whole unless it is full:
                # a send through the stream would cost a trip through the scheduler each time
                try:
                    sent = os.write(self._fd, data)
                except BlockingIOError:
                    sent = 0
            if sent < len(data):
                await self._stream.send_all(data[sent:])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lose(ConnectionLostError(f"GDB connection to {self.address} lost: {exc}"))
            raise self._lost() from exc
        except BaseException:
            # a packet cut in half cannot be taken back: the stream is no longer in step
            self._lose(ConnectionLostError(f"GDB connection to {self.address}: write cut short"))
            await trio.aclose_forcefully(self._stream)
            raise
        finally:
            lock.release()

    async def _receive(self) -> bytes | bytearray:
        fd = self._fd
        if fd is None:
            return await self._stream.receive_some(_RECEIVE_SIZE)
        # like the stream's receive_some, without the extra trip through the scheduler after
        # data has come; every so many reads in a row it yields anyway, so a flood of output
        # cannot starve the other tasks
        self._reads_in_a_row += 1
        if self._reads_in_a_row >= 16:
            self._reads_in_a_row = 0
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return os.read(fd, _RECEIVE_SIZE)
            except BlockingIOError:
                self._reads_in_a_row = 0
                await trio.lowlevel.wait_readable(fd)

    async def run_reader(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The reader task: feed the core, send its acks, hand out replies and events."""
        task_status.started()
        protocol = self._protocol
        try:
            while True:
                data = await self._receive()
                protocol.receive_data(data)
                while not isinstance(event := protocol.next_event(), NeedData):
                    owed = protocol.data_to_send()
                    if owed:  # acks go out before the reply is handed on (gdbserver waits)
                        await self._write(owed)
                    self._dispatch(event)
                owed = protocol.data_to_send()
                if owed:
                    await self._write(owed)
                if not data:
                    self._lose(
                        ConnectionLostError(f"GDB stub at {self.address} closed the connection")
                    )
                    return
        except GdbProtocolError as exc:
            log.warning("GDB %s: %s; closing the connection", self.address, exc)
            self._lose(exc)
            await trio.aclose_forcefully(self._stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._lose(ConnectionLostError(f"GDB connection to {self.address} lost: {exc}"))
        except ConnectionLostError as exc:
            self._lose(exc)
        finally:
            if self.closed_reason is None:
                self._lose(ConnectionLostError(f"GDB connection to {self.address} was closed"))

    def _dispatch(self, event: Reply | ResumeRefused | GdbEvent) -> None:
        if isinstance(event, Reply):
            slot = self._slot
            if slot is None:  # unreachable: the core takes replies only while one is waited for
                log.debug("GDB %s: dropping a reply nobody waits for", self.address)
                return
            slot.reply = event.payload
            slot.replied.set()
            slot.wake.set()
        elif isinstance(event, ResumeRefused):
            command = self._protocol.command.decode("ascii", "replace")
            self._resume_error = (
                GdbCommandError.from_reply(event.payload, command)
                if event.payload
                else GdbUnsupportedError(command)
            )
            self._stopped.set()
        elif isinstance(event, ConsoleOutput):
            slot = self._slot
            if slot is not None and self._protocol.state is ProtocolState.WAITING:
                slot.output += event.data
                if len(slot.output) > MAX_MONITOR_OUTPUT:  # a stub that never says OK
                    raise GdbProtocolError(
                        f"monitor output over {MAX_MONITOR_OUTPUT} bytes with no end"
                    )
            self._publish(event)
        else:
            self._last_stop = event
            self._stopped.set()
            if not self._quiet:
                self._publish(event)

    def _lose(self, reason: BaseException) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        if self._slot is not None:
            self._slot.replied.set()
            self._slot.wake.set()
        self._stopped.set()
        self._closed.set()
        self._events.close(ConnectionLostError(str(reason), address=self.address))

    # --- requests -------------------------------------------------------------------------

    async def _lock_requests(self, deadline: float = math.inf) -> None:
        """Take the request lock, once the stub has answered the request before (which a
        cancelled or timed-out caller may have left on the wire)."""
        lock = self._request_lock
        try:
            lock.acquire_nowait()  # uncontended: no trip through the scheduler
        except trio.WouldBlock:
            with trio.move_on_at(deadline):
                await lock.acquire()
            if lock.statistics().owner is not trio.lowlevel.current_task():
                raise self._timeout("the request queue") from None
        previous = self._slot
        if previous is not None and not previous.replied.is_set():
            with trio.move_on_at(deadline):
                await previous.replied.wait()
            if not previous.replied.is_set():
                lock.release()
                raise self._timeout("the stub's answer to an earlier request")
        if self.closed_reason is not None:
            lock.release()
            raise self._lost()

    def _timeout(self, what: str) -> VirtrioTimeoutError:
        return VirtrioTimeoutError(f"GDB {self.address}: timed out waiting for {what}")

    def _arm_watchdog(self, deadline: float) -> None:
        scope = self._watch_scope
        if scope is None:
            self._watch_deadline = min(self._watch_deadline, deadline)
        elif deadline < scope.deadline:
            scope.deadline = deadline

    async def run_watchdog(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Wakes the request in flight when its deadline passes. It sleeps until the earliest
        deadline it was given; then it either times that request out or, when the request
        then on the wire has a later deadline, sleeps until that one."""
        task_status.started()
        while True:
            with trio.CancelScope(deadline=self._watch_deadline) as scope:
                self._watch_scope = scope
                await trio.sleep_forever()
            self._watch_scope = None
            slot = self._slot
            self._watch_deadline = math.inf
            if slot is not None and not slot.wake.is_set():
                if slot.deadline <= trio.current_time():
                    slot.wake.set()  # its caller times out; the reply, if any, is dropped
                else:
                    self._watch_deadline = slot.deadline

    async def _exchange(self, payload: bytes, timeout: float | None) -> _Slot:
        limit = self._deadline(timeout)
        deadline = trio.current_time() + limit
        await self._lock_requests(deadline)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: send nothing
            data = self._protocol.send_request(payload)  # raises before anything is sent
            slot = self._slot = _Slot(deadline)
            self._arm_watchdog(deadline)
            await self._write(data)
            await slot.wake.wait()
        finally:
            self._request_lock.release()
        if slot.reply is not None:
            if self._slot is slot:
                self._slot = None
            return slot
        if self.closed_reason is not None:
            raise self._lost()
        raise VirtrioTimeoutError(
            f"GDB request {payload[:40]!r} to {self.address}: no reply within {limit:g} s"
        )

    async def request(self, packet: bytes | str, *, timeout: float | None = None) -> bytes:
        """Send one packet and return the stub's reply payload, as it came (``b""``: the stub
        does not support it; ``E NN``: an error). For what the typed calls do not cover.

        Raises:
            GdbLocalProtocolError: the target is running.
            ConnectionLostError: the connection went away before the reply.
            VirtrioTimeoutError: no reply within ``timeout`` (default :attr:`call_timeout`).
        """
        payload = packet.encode("ascii") if isinstance(packet, str) else packet
        slot = await self._exchange(payload, timeout)
        assert slot.reply is not None
        return slot.reply

    async def _request_output(self, payload: bytes, timeout: float | None) -> tuple[bytes, bytes]:
        slot = await self._exchange(payload, timeout)
        assert slot.reply is not None
        return slot.reply, bytes(slot.output)

    async def _resume(self, payload: bytes, *, quiet: bool = False) -> None:
        if self.closed_reason is not None:
            raise self._lost()
        await self._lock_requests()
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self._protocol.send_resume(payload)
            self._resume_error = None
            self._quiet = quiet
            self._stopped = trio.Event()
            self._stopped_since_resume()
            await self._write(data)
        finally:
            self._request_lock.release()

    def _publish(self, event: GdbEvent) -> None:
        if not self._events.closed:
            self._events.publish(event)

    async def wait_stop(self, timeout: float | None = None) -> StopReply:
        """Wait until the target stops and return the stop reply; at once if it is stopped.

        Raises:
            GdbCommandError: the stub refused the last resume (the target never ran).
            ConnectionLostError: the connection went away first.
            VirtrioTimeoutError: still running after ``timeout`` (default :attr:`call_timeout`;
                ``math.inf`` waits for ever). The target keeps running.
        """
        limit = self._deadline(timeout)
        with trio.move_on_after(limit):
            await self._stopped.wait()
        if self.closed_reason is not None:
            raise self._lost()
        if self._resume_error is not None:
            raise self._resume_error
        if not self._stopped.is_set():
            raise VirtrioTimeoutError(
                f"GDB target at {self.address} still running after {limit:g} s"
            )
        assert self._last_stop is not None
        return self._last_stop

    async def interrupt(self, *, timeout: float | None = None) -> StopReply:
        """Stop a running target (``\\x03``) and return its stop reply (usually signal 2). A
        stopped target is left alone and its last stop reply returned."""
        if not self.is_running:
            return await self.wait_stop(timeout)
        await self._write(self._protocol.send_interrupt())
        return await self.wait_stop(timeout)

    async def aclose(self) -> None:
        """Close the connection (the target stays as it is)."""
        self._lose(ConnectionLostError(f"GDB connection to {self.address} was closed"))
        await trio.aclose_forcefully(self._stream)

    def _running(self) -> bool:
        return self.is_running

    def _end_ack_mode(self) -> None:
        self._protocol.end_ack_mode()

    def _stop_thread(self) -> ThreadId | None:
        stop = self._last_stop
        return stop.thread if isinstance(stop, Stopped) else None

    async def _initial_stop(self, timeout: float | None) -> None:
        reply = await self.request(b"?", timeout=timeout)
        self._last_stop = parse_stop_reply(reply)


@asynccontextmanager
async def open_gdb(
    address: str | Address,
    *,
    connect_timeout: float = 10.0,
    call_timeout: float = 10.0,
    byteorder: Byteorder | None = None,
) -> AsyncIterator[GdbClient]:
    """Connect to a GDB stub, learn what it supports, its target description and why the
    target is stopped, and yield the client.

    Args:
        address: ``unix:/path`` (QEMU's ``-chardev socket,path=...`` with ``-gdb chardev:ID``)
            or ``tcp://127.0.0.1:1234``.
        connect_timeout: deadline for connecting and the whole handshake.
        call_timeout: default deadline of each call (``math.inf`` for none).
        byteorder: the target's byte order, if the architecture name does not tell.

    Raises:
        ConnectError: the connection or the handshake failed or timed out.
        ConfigError: a timeout is not positive.
    """
    if not connect_timeout > 0 or not call_timeout > 0:
        raise ConfigError(
            f"connect_timeout and call_timeout must be > 0, got {connect_timeout}, {call_timeout}"
        )
    addr = parse_address(address)
    deadline = Deadline.after(connect_timeout)  # connecting and the handshake, together
    stream = await open_stream(addr, connect_timeout=connect_timeout)
    events: Fanout[GdbEvent] = Fanout(max_queue=1024)
    client = GdbClient(stream, str(addr), call_timeout, events, byteorder)
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(client.run_reader)
            await nursery.start(client.run_watchdog)
            try:
                with trio.fail_at(deadline.at):
                    await client._handshake()
            except (trio.TooSlowError, GdbError, ConnectionLostError, VirtrioTimeoutError) as exc:
                why = "timed out" if isinstance(exc, trio.TooSlowError) else str(exc)
                raise ConnectError(
                    f"GDB handshake with {addr} failed: {why}", address=str(addr)
                ) from exc
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()
