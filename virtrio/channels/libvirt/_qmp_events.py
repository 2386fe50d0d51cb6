"""QMP events of one domain through libvirt's ``qemuMonitorEventRegister``.

:class:`QmpEventRegistrations` keeps, for one :class:`~._connection.LibvirtConnection`, every
open ``qmp_events`` subscription and the libvirt registration behind it. Subscribing is
synchronous (``with conn.qmp_events(domain) as sub``); the registration, which talks to the
daemon, runs in the connection's service nursery, and a failed one ends the subscription
with its error. :meth:`QmpEventRegistrations.wait_registered` waits until they are in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import attrs
import trio

from virtrio.channels.qmp import QmpEvent
from virtrio.errors import VirtrioError, VirtrioTimeoutError
from virtrio.primitives import Fanout, Subscription

if TYPE_CHECKING:
    from ._connection import LibvirtConnection

__all__ = ["QmpEventRegistrations"]


@attrs.define(eq=False)
class _Registration:
    """One subscription's libvirt registration."""

    domain: str
    events: Fanout[QmpEvent]
    done: trio.Event = attrs.field(factory=trio.Event)
    callback_id: int | None = None
    error: BaseException | None = None
    left: bool = False  # the subscriber left the block


def _parse(name: str, seconds: int, micros: int, details: str | None) -> QmpEvent:
    try:
        data = json.loads(details) if details else {}
    except ValueError:
        data = {"raw": details}
    return QmpEvent(name, data if isinstance(data, dict) else {}, seconds + micros / 1e6)


class QmpEventRegistrations:
    """The ``qmp_events`` subscriptions of one connection (see the module docstring)."""

    def __init__(self, connection: LibvirtConnection) -> None:
        self._connection = connection
        self._open: set[_Registration] = set()
        self._ids: set[int] = set()  # registered with libvirt and not deregistered yet
        self.nursery: trio.Nursery | None = None

    @contextmanager
    def subscribe(self, domain: str, max_queue: int) -> Iterator[Subscription[QmpEvent]]:
        """A subscription to ``domain``'s QMP events, registered in the background."""
        conn = self._connection
        conn._live()
        if self.nursery is None:  # pragma: no cover - open_connection always sets it
            raise RuntimeError("qmp_events needs a connection made by open_connection")
        reg = _Registration(domain, Fanout(max_queue=max_queue, overflow="disconnect"))
        self._open.add(reg)
        self.nursery.start_soon(self._register, reg)
        try:
            with reg.events.subscribe() as sub:
                yield sub
        finally:
            reg.left = True
            self._open.discard(reg)
            reg.events.close()
            if reg.callback_id is not None and self.nursery is not None:
                self.nursery.start_soon(self._deregister, reg.callback_id)

    async def wait_registered(self, domain: str, *, timeout: float | None = None) -> None:
        """Return once every open subscription to ``domain`` is registered with libvirt.

        Raises:
            the registration's error (DomainNotFoundError, ConnectionLostError, ...).
        """
        conn = self._connection
        seconds = conn.call_timeout if timeout is None else timeout
        with trio.move_on_after(seconds):
            for reg in [r for r in self._open if r.domain == domain]:
                await reg.done.wait()
                if reg.error is not None:
                    raise reg.error
            return
        raise VirtrioTimeoutError(
            f"libvirt {conn.uri}: QMP events of {domain}: not registered within {seconds:g} s"
        )

    def take_ids(self) -> list[int]:
        """Every callback id still registered, for the connection's close to deregister."""
        ids, self._ids = list(self._ids), set()
        return ids

    def close(self, reason: BaseException) -> None:
        """End every subscription with ``reason`` (the connection went away)."""
        for reg in list(self._open):
            reg.events.close(reason)

    async def _register(self, reg: _Registration) -> None:
        import libvirt_qemu

        conn = self._connection
        events = reg.events

        def callback(
            _c: Any, _d: Any, name: str, seconds: int, micros: int, details: str | None, _o: Any
        ) -> None:
            event = _parse(name, seconds, micros, details)
            conn._on_trio(lambda: events.publish(event))

        register: Callable[..., int] = libvirt_qemu.qemuMonitorEventRegister
        try:
            dom = await conn.lookup(reg.domain)
            callback_id = await conn.call(
                register,
                conn._live(),
                dom,
                None,
                callback,
                None,
                0,
                what=f"register QMP events of {reg.domain}",
            )
            del dom
        except VirtrioError as exc:
            reg.error = exc
            events.close(exc)
        else:
            self._ids.add(callback_id)
            if reg.left:  # the subscriber left while this was under way
                await self._deregister(callback_id)
            else:
                reg.callback_id = callback_id
        finally:
            reg.done.set()

    async def _deregister(self, callback_id: int) -> None:
        import libvirt_qemu

        conn = self._connection
        raw = conn.raw
        if raw is None or not conn.is_connected or callback_id not in self._ids:
            return  # the connection's close deregisters it
        with trio.CancelScope(shield=True), suppress(VirtrioError):
            await conn.call(
                libvirt_qemu.qemuMonitorEventDeregister,
                raw,
                callback_id,
                what="deregister QMP events",
                timeout=5,
            )
        self._ids.discard(callback_id)
