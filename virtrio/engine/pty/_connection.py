"""One client of the daemon: :class:`Connection` reads and answers its requests in order, and
runs a forwarder per attached session.

A forwarder first sends the session's screen snapshot, then the session's output. A small
output frame for a subscriber with nothing queued is written to the socket at once, by the
reactor that read it (``Fanout.subscribe(deliver=)``): no wake-up of the forwarder, no scheduler
pass on the echo's path. What the socket does not take then (it is full, or another send is
under way) is queued, and the forwarder sends it, batched, in order: the rest of a frame written
in part first, whole, then any backpressure warning, then the frames after it. Large frames (a
flood) always go through the forwarder, which batches them into fewer, larger sends.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import trio

from virtrio.channels.pty import (
    NEED_DATA,
    REQUEST_TYPES,
    Ack,
    Attach,
    BackpressureWarning,
    ConnectionClosed,
    Create,
    Created,
    Detach,
    Error,
    ErrorCode,
    Exit,
    FrameDecoder,
    Input,
    Kill,
    Level,
    List,
    Message,
    Ok,
    PtyProtocolError,
    Request,
    Resize,
    Sessions,
    Signal,
    encode,
    encode_output,
)
from virtrio.primitives import (
    DirectReads,
    PressureLevel,
    SpinPolicy,
    SubscriberOverflowError,
    Subscription,
    open_service_nursery,
    write_all,
)

from ._session import Session, SessionError

if TYPE_CHECKING:
    from ._daemon import PtyDaemon

__all__ = ["Connection"]

log = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
#: Output queued for one subscriber is sent in frames of up to this many bytes.
_BATCH_BYTES = 256 * 1024


class Connection:
    """One client: its requests, answered in order, and a forwarder per attached session."""

    def __init__(self, daemon: PtyDaemon, stream: trio.SocketStream) -> None:
        self._daemon = daemon
        self._stream = stream
        self._send_lock = trio.StrictFIFOLock()
        self._attached: dict[int, Subscription[bytes]] = {}
        # sessions whose output may be written straight to the socket (their snapshot is sent)
        self._direct: set[int] = set()
        # sessions whose next queued chunk is the rest of a frame written in part
        self._partial: set[int] = set()
        self._scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        # the client's requests, read from the socket's fd (waiting first after a short read)
        self._reads = DirectReads(stream.socket)
        # how long a write of input polls for the echo (learnt per connection: its client's
        # sessions either echo promptly or not); made with the first input
        self._echo_spin: SpinPolicy | None = None

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            await self._stream.send_all(data)

    async def _send_parts(self, parts: list[bytes]) -> None:
        """Send ``parts`` in order as one unit, gathered by ``writev``: output frames queued
        for this client go out without first being joined into one buffer (a copy of every
        byte, per subscriber). A cancel point; no schedule point when the socket took it all
        at once (the forwarder's next receive is one).

        Raises:
            trio.BrokenResourceError: the connection broke.
            trio.ClosedResourceError: the socket was closed here.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        async with self._send_lock:
            try:
                await write_all(self._stream.socket, list(parts))
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket write failed: {exc}") from exc

    async def run(self) -> None:
        try:
            with self._scope:
                async with open_service_nursery() as nursery:
                    self._nursery = nursery
                    try:
                        await self._read_requests()
                    finally:
                        nursery.cancel_scope.cancel()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("connection lost: %s", exc)
        finally:
            for sub in self._attached.values():
                sub.close()
            await trio.aclose_forcefully(self._stream)

    async def _read_requests(self) -> None:
        decoder = FrameDecoder(
            max_frame_size=self._daemon.config.max_frame_size, accept=REQUEST_TYPES
        )
        while True:
            data = await self._reads.read(_RECEIVE_SIZE)
            decoder.receive_data(data)
            while True:
                try:
                    message = decoder.next_message()
                except PtyProtocolError as exc:
                    log.info("bad frame from a client: %s", exc)
                    self._daemon._count("bad_frames")
                    await self._send(encode(Error(exc.code.value, str(exc), id=exc.request_id)))
                    if exc.fatal:
                        return
                    continue
                if message is NEED_DATA:
                    break
                if isinstance(message, ConnectionClosed):
                    return
                await self._dispatch(message)  # type: ignore[arg-type]
            if not data:
                return

    async def _dispatch(self, request: Request) -> None:
        session_id = getattr(request, "session", None)
        try:
            reply = await self._answer(request)
        except SessionError as exc:
            reply = Error(exc.code.value, str(exc), session=session_id, id=request.id)
        if reply is not None:
            await self._send(encode(reply))

    async def _answer(self, request: Request) -> Message | None:
        daemon = self._daemon
        ok = Ok(id=request.id) if request.id is not None else None
        match request:
            case Input(session=ident, data=data):
                session = daemon._session(ident)
                await session.write(data)
                if ident in self._direct and daemon.config.echo_spin:  # (attached here)
                    if (spin := self._echo_spin) is None:
                        spin = self._echo_spin = SpinPolicy(daemon.config.echo_spin, fair=True)
                    session.await_echo(spin)
                return ok
            case Create():
                session = await daemon._create(request)
                return Created(session.id, session.pid, id=request.id)
            case Attach(session=ident):
                self._attach(daemon._session(ident))
                return ok
            case Detach(session=ident):
                sub = self._attached.pop(ident, None)
                if sub is None:
                    raise SessionError(
                        f"this connection is not attached to session {ident}",
                        ErrorCode.NOT_ATTACHED,
                    )
                sub.close()
                return ok
            case Resize(session=ident, cols=cols, rows=rows):
                daemon._session(ident).resize(cols, rows)
                return ok
            case Kill(session=ident):
                daemon._session(ident).kill()
                return ok
            case Signal(session=ident, signal=number):
                daemon._session(ident).signal(number)
                return ok
            case List():
                return Sessions(tuple(s.info() for s in daemon._sessions.values()), id=request.id)
            case Ack():
                return ok
        raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover

    def _attach(self, session: Session) -> None:
        if session.id in self._attached:
            return
        # subscribe and snapshot with no checkpoint between: the snapshot covers every byte
        # before the subscription, the subscription every byte after
        ident = session.id
        sock = self._stream.socket
        direct = self._direct
        partial = self._partial
        send_lock = self._send_lock

        def deliver(frame: bytes) -> bytes | None:
            # From the reactor, when nothing is queued for this subscriber: write it now if no
            # other send is under way (which would interleave), else queue it. A flood too: a
            # subscriber that keeps up has nothing to batch, and waking its forwarder for each
            # chunk costs a scheduling round per chunk and subscriber (10 subscribers of a cat:
            # 16-18% more daemon CPU per MB, 5-10% less throughput, measured 2026-12-04). One
            # that falls behind has a queue, which its forwarder sends in batches.
            if ident not in direct or send_lock.locked():
                return frame
            try:
                written = os.write(sock.fileno(), frame)
            except OSError:  # EAGAIN (full), or a broken socket the forwarder will see
                return frame
            if written == len(frame):
                return None
            partial.add(ident)
            return frame[written:]

        sub = session.output.subscribe(
            on_overflow=lambda: self._overflowed(session),
            on_pressure=self._pressured,
            deliver=deliver,
        )
        snapshot = session.screen.snapshot()
        self._attached[session.id] = sub
        session.last_attached = time.time()
        assert self._nursery is not None
        self._nursery.start_soon(self._forward, session, sub, snapshot)

    def _pressured(self, level: PressureLevel, raised: bool, dropped: int) -> None:
        # counted as the queue fills: a client that never reads again is counted too (the
        # notice itself reaches it with the next output it reads)
        if raised:
            self._daemon._count(f"{level.value}_warnings")
        if dropped:
            self._daemon._count("chunks_dropped", dropped)

    def _overflowed(self, session: Session) -> None:
        self._daemon._count("disconnects")
        log.warning(
            "client fell %d chunks behind on session %d: disconnecting it (auto-disconnect)",
            self._daemon.config.max_queue_size,
            session.id,
        )
        self._scope.cancel()

    async def _forward(self, session: Session, sub: Subscription[bytes], snapshot: bytes) -> None:
        ident = session.id
        try:
            try:
                if snapshot:
                    await self._send(encode_output(ident, snapshot))
                self._direct.add(ident)
                await self._pump(ident, sub)
            finally:
                self._direct.discard(ident)
                self._partial.discard(ident)
                detached = self._attached.get(ident) is not sub
                if not detached:
                    del self._attached[ident]
            if not detached and session.is_ended:
                await self._send(encode(Exit(ident, session.exit_code, session.exit_signal)))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("session %d: client went away: %s", ident, exc)
            self._scope.cancel()

    async def _pump(self, ident: int, sub: Subscription[bytes]) -> None:
        """Send the subscription's output, batched, until the session ends or it is closed."""
        while True:
            try:
                chunk = await sub.receive()
            except trio.EndOfChannel:
                return
            except SubscriberOverflowError:
                return  # _overflowed is closing the connection
            batch = [chunk]
            size = len(chunk)
            while size < _BATCH_BYTES:
                try:
                    chunk = sub.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, SubscriberOverflowError):
                    break  # a closed queue is seen again by the next receive
                batch.append(chunk)
                size += len(chunk)
            # the rest of a frame written in part comes first, whole, before any warning; each
            # chunk is an output frame already
            at = 1 if ident in self._partial else 0
            self._partial.discard(ident)
            while (pressure := sub.take_pressure()) is not None:  # yellow, then red
                warning = BackpressureWarning(
                    ident, pressure.queue_size, Level(pressure.level.value), pressure.dropped
                )
                batch.insert(at, encode(warning))
                at += 1
            await self._send_parts(batch)
