"""QMP events of a libvirt domain forwarded into a VM's event Fanout, across host reconnects
and domain restarts."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from virtrio.channels.qmp import QmpEvent
from virtrio.primitives import ChannelState, Fanout

if TYPE_CHECKING:
    from virtrio.nurseries.host import HostNursery

__all__ = ["forward_qmp_events"]


async def forward_qmp_events(
    host: HostNursery,
    name: str,
    events: Fanout[QmpEvent],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """QMP events of the domain ``name`` through libvirt into ``events``, registered again on
    every connection and whenever the domain starts (so a domain started after the host
    connected delivers its events without waiting for a host reconnect)."""
    from virtrio.channels.libvirt import EventKind
    from virtrio.errors import VirtrioError

    started = False

    def report() -> None:
        nonlocal started
        if not started:
            task_status.started()
            started = True

    async def register_until_restart(connection: Any, lifecycle: Any) -> None:
        # one registration per run of the domain: a start (after a stop, or a first start of
        # a domain that was not running) registers afresh
        while True:
            async with trio.open_nursery() as nursery:

                async def forward() -> None:
                    try:
                        with connection.qmp_events(name) as source:
                            await connection.wait_qmp_registered(name)
                            report()
                            async for event in source:
                                events.publish(event)
                    except VirtrioError:
                        report()  # not running (or not defined yet): wait until it starts
                        await trio.sleep_forever()

                nursery.start_soon(forward)
                # receive(), not ``async for ... break``: a broken-off async for leaves the
                # subscription's generator to the garbage collector
                try:
                    while (await lifecycle.receive()).event != "STARTED":
                        pass
                except trio.EndOfChannel:
                    return
                nursery.cancel_scope.cancel()

    while True:
        if host.state is not ChannelState.CONNECTED:
            report()
        if host.state is ChannelState.FAILED:
            return  # for good: every call through the VM's handles raises the host's error
        try:
            connection = await host.connection(math.inf)
        except Exception:
            if host.supervisor.failed is not None:  # failed while we waited
                return
            raise
        try:
            with connection.events((EventKind.LIFECYCLE,), domain=name) as lifecycle:
                await register_until_restart(connection, lifecycle)
        except VirtrioError:
            pass  # the connection is lost: wait for the next one
        report()
        await connection.wait_closed()
