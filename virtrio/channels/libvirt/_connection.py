"""One libvirt connection driven from Trio: :func:`open_connection` and :class:`LibvirtConnection`.

Every libvirt call that may block (anything that talks to the daemon) runs in a worker thread
under the connection's :class:`trio.CapacityLimiter`, inside the caller's deadline; a call
that outlives its deadline is abandoned (its thread finishes on its own) and raises
:class:`~virtrio.errors.VirtrioTimeoutError`. Domain events come from the Trio event loop of
:mod:`._eventloop` and are fanned out to subscribers as Trio memory channels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager, suppress
from typing import Any, TypeVar

import trio

from virtrio.channels.qmp import QmpEvent
from virtrio.errors import ConnectionLostError, VirtrioError
from virtrio.primitives import Fanout, Subscription, open_service_nursery, run_in_worker

from ._blocking import _libvirt, run_blocking
from ._errors import VIR_ERR_NO_SUPPORT, LibvirtLocalError
from ._eventloop import (
    Handoff,
    batched_kicks,
    ensure_event_loop,
    take_handoff,
    track_losses,
)
from ._events import DomainEvent, EventKind, register_domain_events
from ._losses import LossWatch
from ._qmp_events import QmpEventRegistrations
from ._summary import DomainSummary, state_name
from ._uri import LibvirtUri

__all__ = ["DomainSummary", "LibvirtConnection", "open_connection"]

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Default number of libvirt calls one connection runs at once in worker threads.
DEFAULT_CONCURRENCY = 8

#: How long closing a connection waits for the calls still running in its worker threads.
_CLOSE_DRAIN = 1.0

_CLOSE_REASONS = {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "closed by client"}


class LibvirtConnection:
    """An open libvirt connection. Create it with :func:`open_connection`.

    Any number of tasks may use it at once; at most ``concurrency`` calls run in threads at a
    time. :attr:`raw` is the ``libvirt.virConnect`` for calls virtrio does not wrap: run them
    through :meth:`call`.
    """

    def __init__(
        self,
        raw: Any,
        uri: str,
        limiter: trio.CapacityLimiter,
        timeout: float,
        *,
        domain_events: bool = True,
    ) -> None:
        #: the underlying ``libvirt.virConnect``
        self.raw = raw
        #: the URI this connection was opened with
        self.uri = uri
        #: the limiter every blocking call of this connection runs under
        self.limiter = limiter
        #: the deadline applied when a call passes none
        self.call_timeout = timeout
        #: whether domain events were registered at open (:meth:`events` needs them)
        self.domain_events = domain_events
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()
        self._events: Fanout[DomainEvent] = Fanout(max_queue=1024, overflow="disconnect")
        self._callback_ids: dict[EventKind, int] = {}
        self._qmp = QmpEventRegistrations(self)
        self._closed = trio.Event()
        # set at open: tells the connection it was lost (its socket watch went, see ._losses)
        self._loss: LossWatch | None = None
        # libvirt's close callback, registered on the first wait_closed() (see there)
        self._close_callback: bool | None = None
        #: why the connection closed, once it has
        self.closed_reason: BaseException | None = None

    # -- calls -------------------------------------------------------------------------------

    async def call(
        self,
        fn: Callable[..., R],
        *args: Any,
        what: str | None = None,
        timeout: float | None = None,
    ) -> R:
        """Run the blocking libvirt call ``fn(*args)`` in a worker thread.

        Args:
            what: names the call in errors (default: the function's name).
            timeout: seconds (default: :attr:`call_timeout`).

        Raises:
            ConnectionLostError: the connection is closed or was lost.
            VirtrioTimeoutError: no answer in time.
            LibvirtCallError: libvirt's error (or a subclass: DomainNotFoundError, ...).
        """
        self._live()
        return await run_blocking(
            fn,
            *args,
            what=what or str(getattr(fn, "__name__", "call")),
            uri=self.uri,
            timeout=self.call_timeout if timeout is None else timeout,
            limiter=self.limiter,
        )

    def _live(self) -> Any:
        """The open ``virConnect``, or ConnectionLostError."""
        if self._closed.is_set() or self.raw is None:
            raise ConnectionLostError(
                f"libvirt {self.uri}: connection closed: {self.closed_reason}", address=self.uri
            )
        return self.raw

    async def list_domains(self, *, timeout: float | None = None) -> list[DomainSummary]:
        """Every domain on the host (running and defined), sorted by name."""

        raw = self._live()

        def collect() -> list[DomainSummary]:
            out = []
            for dom in raw.listAllDomains(0):
                state = dom.state()[0]
                out.append(
                    DomainSummary(
                        name=dom.name(),
                        uuid=dom.UUIDString(),
                        id=dom.ID() if dom.isActive() else -1,
                        state=state_name(state),
                        persistent=bool(dom.isPersistent()),
                    )
                )
            return sorted(out, key=lambda d: d.name)

        return await self.call(collect, what="list domains", timeout=timeout)

    async def lookup(self, name: str, *, timeout: float | None = None) -> Any:
        """The ``libvirt.virDomain`` named ``name`` (a UUID is accepted too).

        Raises:
            DomainNotFoundError: no such domain.
        """
        raw = self._live()
        if len(name) == 36 and name.count("-") == 4:
            return await self.call(
                raw.lookupByUUIDString, name, what=f"look up {name}", timeout=timeout
            )
        return await self.call(raw.lookupByName, name, what=f"look up {name}", timeout=timeout)

    # -- events ------------------------------------------------------------------------------

    @contextmanager
    def events(
        self,
        kinds: Iterable[EventKind] = tuple(EventKind),
        *,
        domain: str | None = None,
        max_queue: int = 1024,
    ) -> Iterator[Subscription[DomainEvent]]:
        """Receive domain events of ``kinds`` (of one ``domain``, or all) while in the block:
        ``with conn.events(domain="vm1") as sub: async for event in sub``.

        The subscription ends with :class:`~virtrio.errors.ConnectionLostError` when the
        connection goes away, and with :class:`~virtrio.nurseries.SubscriberOverflowError` if
        ``max_queue`` events pile up unread. Every kind was registered with libvirt when the
        connection opened, so nothing is missed between subscribing and the first event.

        Raises:
            LibvirtLocalError: the connection was opened with ``domain_events=False``.
        """
        wanted = frozenset(kinds)
        self._live()
        if not self.domain_events:
            raise LibvirtLocalError(
                f"libvirt {self.uri}: opened with domain_events=False, so it has no domain events"
            )

        def accept(event: DomainEvent) -> bool:
            return event.kind in wanted and (domain is None or event.domain == domain)

        with self._events.subscribe(max_queue=max_queue, accept=accept) as sub:
            yield sub

    def qmp_events(
        self, domain: str, *, max_queue: int = 1024
    ) -> AbstractContextManager[Subscription[QmpEvent]]:
        """Receive the QMP events (``STOP``, ``RESUME``, ``SHUTDOWN``, ...) of ``domain`` while in
        the block, through libvirt's ``qemuMonitorEventRegister``:
        ``with conn.qmp_events("vm1") as sub: async for event in sub``.

        The registration talks to the daemon, so it runs in the background: await
        :meth:`wait_qmp_registered` before causing events that must not be missed. A failed
        registration (no such domain, domain not running) ends the subscription with its error;
        so does the connection going away (:class:`~virtrio.errors.ConnectionLostError`), or
        ``max_queue`` events piling up unread.
        """
        return self._qmp.subscribe(domain, max_queue)

    async def wait_qmp_registered(self, domain: str, *, timeout: float | None = None) -> None:
        """Return once every open :meth:`qmp_events` subscription to ``domain`` is registered.

        Raises:
            DomainNotFoundError, LibvirtCallError, ConnectionLostError: why it failed.
            VirtrioTimeoutError: not registered within ``timeout`` (default: ``call_timeout``).
        """
        await self._qmp.wait_registered(domain, timeout=timeout)

    def _deliver(self, kind: EventKind, dom: Any, event: str, detail: str) -> None:
        name, uuid = dom.name(), dom.UUIDString()

        def publish() -> None:
            self._events.publish(DomainEvent(kind, name, uuid, event, detail, trio.current_time()))

        self._on_trio(publish)

    def _on_trio(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._trio_thread:
            fn()
        else:
            with suppress(trio.RunFinishedError):
                self._token.run_sync_soon(fn)

    # -- lifetime ----------------------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        """True until the connection is closed or lost."""
        return not self._closed.is_set()

    async def wait_closed(self) -> None:
        """Return once the connection has been closed or lost (keepalive, EOF, daemon gone).

        The connection knows it was lost from the start (libvirt removing its socket from the
        event loop says so, at no cost). The first call also registers libvirt's close
        callback (a round trip now and one at close), which adds what only the daemon knows: a
        proxying daemon (virtproxyd) losing the hypervisor daemon behind it.
        """
        if self._close_callback is None and not self._closed.is_set():
            self._close_callback = False
            with suppress(VirtrioError):
                await self.call(self._register_close_callback, what="register close callback")
        await self._closed.wait()

    def _register_close_callback(self) -> None:
        """In a worker thread: libvirt's close callback (for :meth:`wait_closed`)."""
        libvirt = _libvirt()
        raw = self.raw
        if raw is None:
            return
        try:
            raw.registerCloseCallback(self._on_close_callback, None)
            self._close_callback = True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != VIR_ERR_NO_SUPPORT:
                raise

    def _mark_closed(self, reason: BaseException) -> None:
        if self._closed.is_set():
            return
        self.closed_reason = reason
        self._closed.set()
        self._events.close(reason)
        self._qmp.close(reason)

    def _on_close_callback(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self._on_lost(_CLOSE_REASONS.get(reason, str(reason)))

    def _on_lost(self, reason: str) -> None:
        """From any thread, maybe inside a libvirt callback holding the client's lock: so
        always deferred to the Trio thread."""
        error = ConnectionLostError(
            f"libvirt {self.uri}: connection lost: {reason}", address=self.uri
        )
        with suppress(trio.RunFinishedError):
            self._token.run_sync_soon(self._mark_closed, error)

    def _setup_blocking(self, keepalive_interval: int, keepalive_count: int) -> None:
        """Keepalive and domain events, in the worker thread that opened the connection."""
        libvirt = _libvirt()
        if keepalive_interval > 0:
            try:
                self.raw.setKeepAlive(keepalive_interval, keepalive_count)
            except libvirt.libvirtError as exc:
                # in-process drivers (test:///) have nothing to keep alive
                if exc.get_error_code() != VIR_ERR_NO_SUPPORT:
                    raise
        if self.domain_events:
            self._callback_ids = register_domain_events(self.raw, self._deliver)

    async def aclose(self) -> None:
        """Deregister callbacks and close the connection (idempotent)."""
        raw, self.raw = self.raw, None
        if raw is None:
            return
        ids = list(self._callback_ids.values())
        self._callback_ids.clear()
        qmp_ids = self._qmp.take_ids()
        libvirt = _libvirt()
        if self._loss is not None:
            self._loss.disarm()

        handoff = Handoff()

        def close() -> None:
            with batched_kicks(handoff):  # the event loop's wake-up rides on the result's
                deregister_and_close()

        def deregister_and_close() -> None:
            if qmp_ids:
                import libvirt_qemu

                for qmp_id in qmp_ids:
                    with suppress(libvirt.libvirtError):
                        libvirt_qemu.qemuMonitorEventDeregister(raw, qmp_id)
            for callback_id in ids:
                with suppress(libvirt.libvirtError):
                    raw.domainEventDeregisterAny(callback_id)
            if self._close_callback:
                with suppress(libvirt.libvirtError):
                    raw.unregisterCloseCallback()
            with suppress(libvirt.libvirtError):
                raw.close()

        self._mark_closed(ConnectionLostError(f"libvirt {self.uri}: closed", address=self.uri))
        with trio.CancelScope(shield=True):
            tokens = await self._wait_for_calls()
            try:
                # not abandoned: close must finish before the event loop may be torn down
                await run_in_worker(close)
            finally:
                take_handoff(handoff)
                for token in tokens:
                    self.limiter.release_on_behalf_of(token)

    async def _wait_for_calls(self) -> list[object]:
        """Take every limiter token, within a moment; the tokens taken.

        Calls their callers gave up on (a deadline, a lost connection) may still run in worker
        threads on this connection, each holding a token until its thread returns. Closing
        under them once crashed libvirt's client (a segfault in qemuMonitorCommand, libvirtd
        SIGKILLed under pending calls): let them return first, for a moment (a daemon that
        never answers keeps them for good). With none in flight (the usual case) there is
        nothing to wait for, and no new call can start: every way to one (:meth:`call`, a
        stream's open) needs :attr:`raw`, which :meth:`aclose` has dropped already.
        """
        tokens: list[object] = []
        if self.limiter.borrowed_tokens == 0:
            return tokens
        with trio.move_on_after(_CLOSE_DRAIN):
            for _ in range(int(self.limiter.total_tokens)):
                token = object()
                await self.limiter.acquire_on_behalf_of(token)
                tokens.append(token)
        return tokens


@asynccontextmanager
async def open_connection(
    uri: str | LibvirtUri,
    *,
    keepalive_interval: int = 30,
    keepalive_count: int = 5,
    connect_timeout: float = 10.0,
    call_timeout: float = 30.0,
    concurrency: int = DEFAULT_CONCURRENCY,
    domain_events: bool = True,
) -> AsyncIterator[LibvirtConnection]:
    """Open the libvirt connection ``uri`` and close it on exit.

    Args:
        keepalive_interval: seconds between libvirt keepalive probes (0 disables; the seed's
            default is 30 s); the connection is declared lost after ``keepalive_count`` probes
            go unanswered.
        connect_timeout: seconds to wait for the connection to open.
        call_timeout: the default deadline of each call.
        concurrency: how many blocking calls may run in worker threads at once.
        domain_events: register for every domain event kind at open (three round trips to the
            daemon, and three more to deregister at close), so :meth:`~LibvirtConnection.events`
            misses nothing; False for a connection that only makes calls (QMP events through
            :meth:`~LibvirtConnection.qmp_events` work either way).

    Raises:
        ConnectError: the connection could not be opened (the message has libvirt's reason).
    """
    uri = str(uri)
    ensure_event_loop()
    libvirt = _libvirt()
    limiter = trio.CapacityLimiter(concurrency)
    connection = LibvirtConnection(None, uri, limiter, call_timeout, domain_events=domain_events)

    abandoned = threading.Event()

    def open_and_set_up() -> None:
        # one worker-thread trip for open, keepalive and domain events; libvirt removing the
        # socket watch it adds meanwhile tells the connection it was lost (see ._losses)
        with track_losses(connection._on_lost) as loss:
            connection.raw = libvirt.open(uri)
            connection._loss = loss
            try:
                connection._setup_blocking(keepalive_interval, keepalive_count)
                if abandoned.is_set():  # the caller gave up (timeout): nobody will close it
                    raise RuntimeError("open abandoned after its deadline")
            except BaseException:
                loss.disarm()
                raw, connection.raw = connection.raw, None
                raw.close()
                raise

    try:
        await run_blocking(
            open_and_set_up,
            what="open",
            uri=uri,
            timeout=connect_timeout,
            limiter=limiter,
            connecting=True,
        )
    except BaseException:
        abandoned.set()
        raise
    try:
        async with open_service_nursery() as nursery:  # the caller's error, not a group
            connection._qmp.nursery = nursery
            try:
                yield connection
            finally:
                await connection.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await connection.aclose()
