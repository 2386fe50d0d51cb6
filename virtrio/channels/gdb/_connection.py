"""The GDB client's connection: the socket, read by the task that waits for an answer.

The RSP carries one exchange at a time and the stub's next packet answers the last one, so
there is no reader task handing replies over: the caller that sent a request reads the socket
itself until its reply has come, straight from the descriptor: one read at once (``_take_now``:
a stub on the caller's CPU has answered by the time the write returns), then it polls for a
short adaptive window (``_take_fast``, ``open_gdb(spin=...)``, see ``_fastpath``), then parks on
:func:`trio.lowlevel.wait_readable` (``_pump``). A round trip answered before parking costs no
pass through the scheduler at all. The ack of a packet taken that way goes out at once (or, if
the socket cannot take it then, with the next packet or alone a little later: ``_acks``). While
the target runs, the task in :meth:`~virtrio.channels.gdb.GdbClient.wait_stop` reads the stop
reply the same way; when no one waits for it, a small watcher task reads instead (console
output and the stop reach :meth:`events` with no caller waiting). While nothing is asked and
the target is stopped, nothing reads: a stub that hangs up then is noticed by the next call.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import TypeVar

import trio

from virtrio.channels._jsonstream import NeedData
from virtrio.errors import ConnectionLostError
from virtrio.primitives import READS_WITHOUT_YIELD, Fanout, Subscription

from ._acks import AckTimer
from ._errors import GdbCommandError, GdbError, GdbProtocolError, GdbUnsupportedError
from ._execution import GdbExecution
from ._fastpath import Mutex, SpinPolicy
from ._protocol import GdbProtocol, ProtocolState, Reply, ResumeRefused
from ._replies import ConsoleOutput, GdbEvent, StopReply
from ._target import Byteorder

__all__ = ["MAX_MONITOR_OUTPUT", "GdbConnection"]

_T = TypeVar("_T")

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
#: Reads in a row without passing through the scheduler (the rule of every direct reader)
_READS_WITHOUT_YIELD = READS_WITHOUT_YIELD
#: The most ``O`` output one ``monitor`` call collects (QEMU's ``info mtree`` is ~100 KiB).
MAX_MONITOR_OUTPUT = 16 << 20


class GdbConnection(GdbExecution):
    """The socket and the sans-I/O core of one client; the calls are in ``_client``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        address: str,
        call_timeout: float,
        events: Fanout[GdbEvent],
        byteorder: Byteorder | None,
        spin: float = 0.0,
        pipeline: bool = False,
    ) -> None:
        super().__init__(byteorder)
        self._pipeline = pipeline  # memory pieces go out together (open_gdb(pipeline=True))
        self._stream = stream
        # the socket (non-blocking, as Trio keeps it), read and written through its descriptor
        self._socket = stream.socket if type(stream) is trio.SocketStream else None
        # its descriptor, for the fast paths (-1 once the connection is lost: every path that
        # closes the stream loses the connection first, so a closed descriptor's number, maybe
        # reused by then, is never written to or read)
        self._fd = -1 if self._socket is None else self._socket.fileno()
        self._reads_in_a_row = 0
        self.address = address
        #: Deadline (seconds) of a call that passes ``timeout=None``.
        self.call_timeout = call_timeout
        self._events = events
        self._protocol = GdbProtocol()
        # one exchange at a time (a request and its reply, or sending a resume)
        self._request_lock = Mutex()
        # the one task reading the socket (a caller for its reply, a stop's waiter, the watcher)
        self._read_lock = Mutex()
        # the readers (acks) and callers (requests, \x03) both write
        self._send_lock = Mutex()
        # how long a caller polls before parking: for replies, and for stops (apart: a target
        # may run long before it stops, which must not stop the replies' spinning)
        self._reply_spin = SpinPolicy(spin)
        self._stop_spin = SpinPolicy(spin)
        self._reply: bytes | None = None  # the answer to the request in flight, once come
        self._replies: list[bytes] | None = None  # every answer, while requests sent together
        self._pending: bytes | None = None  # read by the fast path, not yet handled
        self._waited = False  # the fast path found nothing to read (and spent its window)
        self._output = bytearray()  # its console output (qRcmd)
        self._stopped = trio.Event()
        self._stopped.set()
        self._last_stop: StopReply | None = None
        self._resume_error: GdbError | None = None
        self._quiet = False  # the stop of an internal step (off a breakpoint) is not published
        self._watch = trio.Event()  # wakes the watcher: the target runs and maybe no one reads
        self._acks = AckTimer(self._protocol, self._write_now)  # at once, or owed
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
        """Return once the connection has closed or failed (see :attr:`closed_reason`); a stub
        that hangs up while nothing is asked and the target is stopped is noticed by the next
        call."""
        await self._closed.wait()

    def events(self, *, max_queue: int = 1024) -> Subscription[GdbEvent]:
        """Stop replies and console output from now on, each listener with its own queue:
        ``with gdb.events() as sub: event = await sub.receive()``. When the connection is lost
        the listener raises :class:`~virtrio.errors.ConnectionLostError` after what it holds."""
        return self._events.subscribe(max_queue=max_queue)

    def _lost(self) -> ConnectionLostError:
        reason = self.closed_reason
        return ConnectionLostError(
            f"GDB connection to {self.address} lost: {reason}", address=self.address
        )

    def _lose(self, reason: BaseException) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._fd = -1
        self._stopped.set()
        self._closed.set()
        self._watch.set()
        self._acks.close()
        self._events.close(ConnectionLostError(str(reason), address=self.address))

    def _publish(self, event: GdbEvent) -> None:
        if not self._events.closed:
            self._events.publish(event)

    # --- writing -------------------------------------------------------------------------

    def _write_now(self, data: bytes) -> int:
        """Write what the socket takes of ``data`` at once, if no other task is writing: the
        number of bytes written (0 if it could not; the caller sends the rest with
        :meth:`_write` before any checkpoint, so nothing comes between, and :meth:`_write`
        also reports a broken socket)."""
        fd = self._fd
        if fd < 0 or self._send_lock.locked():
            return 0
        try:
            return os.write(fd, data)
        except OSError:  # full (BlockingIOError) or broken: _write says which
            return 0

    async def _send_owed(self, data: bytes) -> None:
        """Write acks the :class:`AckTimer` sends alone."""
        sent = self._write_now(data)
        if sent < len(data):
            await self._write(data[sent:])

    async def _write(self, data: bytes) -> None:
        if self.closed_reason is not None:
            raise self._lost()
        lock = self._send_lock
        await lock.acquire()  # uncontended (the usual case): no trip through the scheduler
        try:
            sent = 0
            sock = self._socket
            if sock is not None:
                # straight into the socket buffer, which takes a packet whole unless it is full:
                # a send through the stream would cost a trip through the scheduler each time
                fd = sock.fileno()
                if fd < 0:
                    raise trio.ClosedResourceError("the socket was closed")
                try:
                    sent = os.write(fd, data)
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

    # --- reading -------------------------------------------------------------------------

    async def _read(self, deadline: float, spin: SpinPolicy | None) -> bytes | bytearray | None:
        """The next bytes from the stub (``b""`` at the end of the stream), or None once
        ``deadline`` has passed with nothing come; polls for ``spin``'s window first."""
        pending = self._pending
        if pending is not None:  # read by the fast path, to be handled the general way
            self._pending = None
            return pending
        sock = self._socket
        if sock is None:
            with trio.move_on_at(deadline):
                return await self._stream.receive_some(_RECEIVE_SIZE)
            return None
        while True:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the socket was closed")
            data = self._read_now(fd, deadline, spin)
            if data is not None:
                break
            spin = None  # one window per read
            self._reads_in_a_row = 0
            if deadline == math.inf:
                await trio.lowlevel.wait_readable(sock)
                continue
            with trio.move_on_at(deadline) as scope:
                await trio.lowlevel.wait_readable(sock)
            if scope.cancelled_caught:
                return None
        await self._count_read()
        return data

    def _read_now(self, fd: int, deadline: float, spin: SpinPolicy | None) -> bytes | None:
        """What the socket holds now or, with ``spin``, within its window (bounded by
        ``deadline`` and any enclosing cancel scope's): the bytes (``b""`` at the end of the
        stream), or None."""
        try:
            return os.read(fd, _RECEIVE_SIZE)
        except BlockingIOError:
            if spin is None:
                return None
            return spin.poll(fd, _RECEIVE_SIZE, min(deadline, trio.current_effective_deadline()))

    async def _count_read(self) -> None:
        self._reads_in_a_row += 1
        if self._reads_in_a_row >= _READS_WITHOUT_YIELD:
            self._reads_in_a_row = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _take_now(self, take: Callable[[bytes], _T]) -> _T | None:
        """:meth:`_take_fast` without waiting: one read of what the socket holds, the usual
        answer taken by ``take`` (its ack owed); or None: nothing came (then nothing is
        changed), or a lone ``+`` (taken), or something else (left for :meth:`_pump`). The
        caller yields when ``_reads_in_a_row`` reaches ``_READS_WITHOUT_YIELD``.

        Raises:
            ConnectionLostError: the socket failed.
        """
        fd = self._fd
        if fd < 0 or self._pending is not None:
            return None
        try:
            data = os.read(fd, _RECEIVE_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._lose(ConnectionLostError(f"GDB connection to {self.address} lost: {exc}"))
            raise self._lost() from exc
        self._reads_in_a_row += 1
        return self._took(data, take)

    def _took(self, data: bytes, take: Callable[[bytes], _T | None]) -> _T | None:
        """What ``take`` made of ``data``, its ack owed; or None: ``data`` was a lone ``+``
        (taken), or something else, kept in ``_pending`` for :meth:`_pump`."""
        if data and (taken := take(data)) is not None:
            if self._protocol.ack_mode:
                self._acks.ack_now()
            return taken
        if not self._protocol.take_ack(data):
            self._pending = data
        return None

    async def _await_reply(self, deadline: float) -> bool:
        """Read until the requests in flight are answered: True, or False once ``deadline``
        passed first. The caller holds the read lock."""
        reply = await self._take_fast(deadline, self._reply_spin, self._protocol.take_reply)
        if reply is not None:
            self._got_reply(reply)
            if self._answered():  # (requests sent together: the others' replies follow)
                return True
        spin = None if self._waited else self._reply_spin  # one window per wait
        return await self._pump(self._answered, deadline, spin)

    async def _take_fast(
        self, deadline: float, spin: SpinPolicy | None, take: Callable[[bytes], _T | None]
    ) -> _T | None:
        """The usual answer (the stub's ``+`` and its packet, together or apart, each whole in
        one read within the polling window), taken by ``take`` (the protocol's ``take_reply``
        or ``take_stop``) in a few C-level scans, its ack owed (``_acks``): what
        ``take`` returned; or None, and anything else read is left for the general way
        (:meth:`_pump`, which also raises its errors, and polls no more if this found nothing:
        see ``_waited``)."""
        self._waited = False
        sock = self._socket
        if sock is None or self._pending is not None:
            return None
        for _ in range(2):  # the ack, then the packet (or both in one read)
            fd = sock.fileno()
            if fd < 0 or self.closed_reason is not None:
                return None
            try:
                data = self._read_now(fd, deadline, spin)
            except OSError as exc:
                self._lose(ConnectionLostError(f"GDB connection to {self.address} lost: {exc}"))
                raise self._lost() from exc
            if data is None:
                self._waited = True  # (its window, if any, spent)
                return None
            self._reads_in_a_row += 1
            if self._reads_in_a_row >= _READS_WITHOUT_YIELD:
                self._reads_in_a_row = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
            if (taken := self._took(data, take)) is not None or self._pending is not None:
                return taken
        return None

    def _answered(self) -> bool:
        return self._protocol.state is not ProtocolState.WAITING

    async def _pump(
        self, done: Callable[[], bool], deadline: float, spin: SpinPolicy | None = None
    ) -> bool:
        """Read and handle what the stub sends until ``done()``: True, or False once
        ``deadline`` passed first (each read polling for ``spin``'s window before it parks).
        The caller holds the read lock.

        Raises:
            ConnectionLostError: the connection is gone (or went now: the stub hung up, broke
                the protocol, or the socket failed).
        """
        while not done():
            if self.closed_reason is not None:
                raise self._lost()
            try:
                data = await self._read(deadline, spin)
                if data is None:
                    return False
                await self._feed(data)
            except GdbProtocolError as exc:
                log.warning("GDB %s: %s; closing the connection", self.address, exc)
                self._lose(exc)
                await trio.aclose_forcefully(self._stream)
                raise self._lost() from exc
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._lose(ConnectionLostError(f"GDB connection to {self.address} lost: {exc}"))
                raise self._lost() from exc
        if self.closed_reason is not None:
            raise self._lost()
        return True

    async def _feed(self, data: bytes | bytearray) -> None:
        protocol = self._protocol
        if type(data) is bytes and data and (reply := protocol.take_reply(data)) is not None:
            if protocol.ack_mode:
                self._acks.ack_now()
            self._got_reply(reply)
            return
        protocol.receive_data(data)
        while not isinstance(event := protocol.next_event(), NeedData):
            owed = protocol.data_to_send()
            if owed:  # acks go out before the reply is acted on (gdbserver waits)
                await self._write(owed)
            self._dispatch(event)
        owed = protocol.data_to_send()
        if owed:
            await self._write(owed)
        if not data:
            self._lose(ConnectionLostError(f"GDB stub at {self.address} closed the connection"))

    def _dispatch(self, event: Reply | ResumeRefused | GdbEvent) -> None:
        if isinstance(event, Reply):
            self._got_reply(event.payload)
        elif isinstance(event, ResumeRefused):
            command = self._protocol.command.decode("ascii", "replace")
            self._resume_error = (
                GdbCommandError.from_reply(event.payload, command)
                if event.payload
                else GdbUnsupportedError(command)
            )
            self._stopped.set()
        elif isinstance(event, ConsoleOutput):
            if self._protocol.state is ProtocolState.WAITING:
                self._output += event.data
                if len(self._output) > MAX_MONITOR_OUTPUT:  # a stub that never says OK
                    raise GdbProtocolError(
                        f"monitor output over {MAX_MONITOR_OUTPUT} bytes with no end"
                    )
            self._publish(event)
        else:
            self._last_stop = event
            self._stopped.set()
            if not self._quiet:
                self._publish(event)

    def _got_reply(self, payload: bytes) -> None:
        self._reply = payload
        if self._replies is not None:
            self._replies.append(payload)

    def _not_running(self) -> bool:
        return self._protocol.state is not ProtocolState.RUNNING

    async def _read_stop(self, limit: float, spin: SpinPolicy | None = None) -> None:
        """Read until the target stops or ``limit`` seconds have passed, if no other task
        reads; otherwise wait for the stop that task will see."""
        lock = self._read_lock
        if not lock.try_acquire():
            with trio.move_on_after(limit):
                await self._stopped.wait()
            return
        try:
            # a target run on this CPU has stopped by the time the resume's write returned
            stop: StopReply | None = self._take_now(self._protocol.take_stop)
            if stop is None:
                deadline = trio.current_time() + limit
                stop = await self._take_fast(deadline, spin, self._protocol.take_stop)
                if stop is None:
                    await self._pump(self._not_running, deadline, None if self._waited else spin)
                    return
                self._dispatch(stop)  # (which ends the run: idle again)
                return
            self._dispatch(stop)
            if self._reads_in_a_row >= _READS_WITHOUT_YIELD:
                self._reads_in_a_row = 0
                await trio.lowlevel.cancel_shielded_checkpoint()
        finally:
            lock.release()
            if self.is_running:
                self._watch.set()  # gave up first: the watcher reads on

    async def _run_watcher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Reads while the target runs and no caller waits for its stop."""
        task_status.started()
        while self.closed_reason is None:
            await self._watch.wait()
            self._watch = trio.Event()
            if not self.is_running or self._read_lock.locked():
                continue  # stopped meanwhile, or a caller reads (and wakes us if it gives up)
            try:
                await self._read_stop(math.inf)
            except ConnectionLostError:
                return
