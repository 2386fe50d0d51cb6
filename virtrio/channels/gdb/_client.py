"""The GDB client: :func:`open_gdb` and :class:`GdbClient` (its connection is in
``_connection``: the caller that sends a packet reads its own answer)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.channels._addresses import Address, open_stream, parse_address
from virtrio.errors import ConfigError, ConnectError, ConnectionLostError, VirtrioTimeoutError
from virtrio.primitives import Deadline, Fanout, open_service_nursery

from ._connection import _READS_WITHOUT_YIELD, GdbConnection
from ._errors import GdbError
from ._fastpath import DEFAULT_SPIN
from ._protocol import ProtocolState
from ._replies import GdbEvent, Stopped, StopReply, ThreadId, parse_stop_reply
from ._target import Byteorder

__all__ = ["GdbClient", "open_gdb"]


class GdbClient(GdbConnection):
    """A connected GDB remote-protocol session. Create it with :func:`open_gdb`.

    The protocol carries one request at a time and the stub's next packet is its answer, so
    requests from several tasks are queued (one on the wire at a time). While the target runs
    (after :meth:`continue_`) only :meth:`interrupt` and :meth:`wait_stop` may be used; the stop
    reply and any console output arrive through :meth:`events` as well.
    """

    def _deadline(self, timeout: float | None) -> float:
        return self.call_timeout if timeout is None else timeout

    def _timeout(self, what: str) -> VirtrioTimeoutError:
        return VirtrioTimeoutError(f"GDB {self.address}: timed out waiting for {what}")

    async def _lock_requests(self, deadline: float = math.inf) -> None:
        """Take the request lock, once the stub has answered the request before (which a
        cancelled or timed-out caller may have left on the wire: its late reply is read and
        dropped here, never taken for the next request's)."""
        lock = self._request_lock
        if not lock.try_acquire():  # uncontended: no trip through the scheduler
            taken = False
            with trio.move_on_at(deadline):
                await lock.acquire()
                taken = True
            if not taken:
                raise self._timeout("the request queue") from None
        try:
            if self.closed_reason is not None:
                raise self._lost()
            if not self._answered():
                async with self._read_lock:
                    if not await self._pump(self._answered, deadline):
                        raise self._timeout("the stub's answer to an earlier request")
        except BaseException:
            lock.release()
            raise

    async def _exchange(self, payload: bytes, timeout: float | None) -> bytes:
        protocol = self._protocol
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: send nothing
        if not (
            self.closed_reason is None
            and protocol.state is ProtocolState.IDLE
            and not self._request_lock.locked()
            and not self._read_lock.locked()
        ):
            return (await self._exchange_in_turn([payload], timeout))[0]  # queued, or in trouble
        # the usual case: no other task sends or reads, and none can until this one awaits, so
        # it takes no lock unless it has to wait
        data = self._acks.before(protocol.send_request(payload))  # (raises first)
        self._reply = None
        if self._output:
            self._output.clear()
        sent = self._write_now(data)
        if sent == len(data):
            # a stub on this CPU has answered by the time the write returns: one read takes it
            # (then no clock, no deadline, no polling)
            reply = self._take_now(protocol.take_reply)
            if reply is not None:
                if self._reads_in_a_row >= _READS_WITHOUT_YIELD:
                    self._reads_in_a_row = 0
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return reply
        self._request_lock.try_acquire()  # (both free: nothing has awaited since the test)
        self._read_lock.try_acquire()
        return await self._finish_exchange(payload, 1, timeout, data[sent:], None)

    async def _exchange_in_turn(self, payloads: list[bytes], timeout: float | None) -> list[bytes]:
        """:meth:`_exchange` once the requests before it are answered; or, given several
        payloads, those sent together (``GdbProtocol.send_requests``): their replies, in
        order, all within one ``timeout``."""
        limit = self.call_timeout if timeout is None else timeout
        deadline = trio.current_time() + limit
        await self._lock_requests(deadline)
        protocol = self._protocol
        replies: list[bytes] = []
        try:
            await trio.lowlevel.checkpoint_if_cancelled()  # cancelled while queued: send nothing
            data = self._acks.before(protocol.send_requests(payloads))  # (raises first)
            self._reply = None
            self._replies = replies if len(payloads) > 1 else None
            if self._output:
                self._output.clear()
            sent = self._write_now(data)
            read_lock = self._read_lock
            if not read_lock.try_acquire():
                await read_lock.acquire()  # (waits only for a stop's reader finishing its chunk)
        except BaseException:
            self._replies = None
            self._request_lock.release()
            raise
        last = await self._finish_exchange(
            payloads[0], len(payloads), timeout, data[sent:], deadline
        )
        return replies or [last]

    async def _finish_exchange(
        self, first: bytes, count: int, timeout: float | None, rest: bytes, deadline: float | None
    ) -> bytes:
        """Send ``rest`` of the ``count`` requests (``first`` the first of them) and wait for
        their replies; the caller took both locks, which this releases. The last reply."""
        limit = self.call_timeout if timeout is None else timeout
        reply: bytes | None = None
        try:
            try:
                if rest:
                    await self._write(rest)
                if deadline is None:
                    deadline = trio.current_time() + limit
                if await self._await_reply(deadline):
                    reply = self._reply
            finally:
                self._replies = None
                self._read_lock.release()
        finally:
            self._request_lock.release()
        if reply is not None:
            return reply
        more = f" and {count - 1} more" if count > 1 else ""
        raise VirtrioTimeoutError(
            f"GDB request {first[:40]!r}{more} to {self.address}: no reply within {limit:g} s"
        )

    async def _exchange_all(self, payloads: list[bytes], timeout: float | None) -> list[bytes]:
        """Send ``payloads`` in one write (see ``GdbProtocol.send_requests``) and return their
        replies, in order, all within one ``timeout``."""
        if len(payloads) == 1:
            return [await self._exchange(payloads[0], timeout)]
        return await self._exchange_in_turn(payloads, timeout)

    async def request(self, packet: bytes | str, *, timeout: float | None = None) -> bytes:
        """Send one packet and return the stub's reply payload, as it came (``b""``: the stub
        does not support it; ``E NN``: an error). For what the typed calls do not cover.

        Raises:
            GdbLocalProtocolError: the target is running.
            ConnectionLostError: the connection went away before the reply.
            VirtrioTimeoutError: no reply within ``timeout`` (default :attr:`call_timeout`).
        """
        payload = packet.encode("ascii") if isinstance(packet, str) else packet
        return await self._exchange(payload, timeout)

    async def _request_output(self, payload: bytes, timeout: float | None) -> tuple[bytes, bytes]:
        reply = await self._exchange(payload, timeout)
        return reply, bytes(self._output)

    async def _resume(self, payload: bytes, *, quiet: bool = False) -> None:
        if self.closed_reason is not None:
            raise self._lost()
        if not (self._protocol.state is ProtocolState.IDLE and self._request_lock.try_acquire()):
            await self._lock_requests()  # queued, or a reply still owed
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            data = self._acks.before(self._protocol.send_resume(payload))
            self._resume_error = None
            self._quiet = quiet
            self._stopped = trio.Event()
            self._stopped_since_resume()
            sent = self._write_now(data)
            if sent < len(data):
                await self._write(data[sent:])
            self._watch.set()  # read by wait_stop's caller or, if none comes, the watcher
        finally:
            self._request_lock.release()

    async def wait_stop(self, timeout: float | None = None) -> StopReply:
        """Wait until the target stops and return the stop reply; at once if it is stopped.

        Raises:
            GdbCommandError: the stub refused the last resume (the target never ran).
            ConnectionLostError: the connection went away first.
            VirtrioTimeoutError: still running after ``timeout`` (default :attr:`call_timeout`;
                ``math.inf`` waits for ever). The target keeps running.
        """
        limit = self._deadline(timeout)
        if not self._stopped.is_set():
            await self._read_stop(limit, self._stop_spin)
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
        if self.closed_reason is None and self._protocol.owes_data:
            self._write_now(self._protocol.data_to_send())  # the last ack, if it fits now
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
    spin: float = DEFAULT_SPIN,
    pipeline: bool = False,
) -> AsyncIterator[GdbClient]:
    """Connect to a GDB stub, learn what it supports, its target description and why the
    target is stopped, and yield the client.

    Args:
        address: ``unix:/path`` (QEMU's ``-chardev socket,path=...`` with ``-gdb chardev:ID``)
            or ``tcp://127.0.0.1:1234``.
        connect_timeout: deadline for connecting and the whole handshake.
        call_timeout: default deadline of each call (``math.inf`` for none).
        byteorder: the target's byte order, if the architecture name does not tell.
        spin: the most a call busy-polls the socket for its answer (a reply, or the stop
            :meth:`~GdbClient.wait_stop` waits for) before parking, in seconds; 0 never polls.
            A local stub answers within tens of microseconds, and parking costs about as much
            again, so polling halves a round trip at the price of the CPU it spins (at most
            ``spin`` per wait, during which the event loop runs nothing else). The window
            adapts: a few times the stub's recent latency, up to ``spin``, and none while
            answers keep coming later than that (see ``virtrio/channels/gdb/_fastpath.py``).
            Never past the call's deadline.
        pipeline: the stub reads its input in order and answers each packet without waiting
            for the ack of its last reply, as QEMU's system-mode stub does (virtrio's QEMU
            backend connects so): a memory read of several PacketSize pieces then sends them
            together (up to 16) instead of one per round trip (4 KiB from QEMU 7.2: two ``m``
            packets in about the time of one). Not for gdbserver, which waits for each ack.

    Raises:
        ConnectError: the connection or the handshake failed or timed out.
        ConfigError: a timeout is not positive, or ``spin`` is negative.
    """
    if not connect_timeout > 0 or not call_timeout > 0:
        raise ConfigError(
            f"connect_timeout and call_timeout must be > 0, got {connect_timeout}, {call_timeout}"
        )
    if not spin >= 0 or spin == math.inf:
        raise ConfigError(f"spin must be a finite number of seconds >= 0, got {spin}")
    addr = parse_address(address)
    deadline = Deadline.after(connect_timeout)  # connecting and the handshake, together
    stream = await open_stream(addr, connect_timeout=connect_timeout)
    events: Fanout[GdbEvent] = Fanout(max_queue=1024)
    client = GdbClient(stream, str(addr), call_timeout, events, byteorder, spin, pipeline)
    try:
        async with open_service_nursery() as nursery:
            await nursery.start(client._run_watcher)
            await nursery.start(client._acks.run, client._send_owed)
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
