"""The fault matrix for the libvirt host connection, and QMP and the guest agent through it,
against the real libvirtd (the demo guest booted under it once for the module).

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       libvirtd stopped (SIGSTOP) under 10 QMP and 10 agent calls
                       through it, then SIGKILL: all fail with ConnectionLostError
                       within 100 ms
peer restarted         that libvirtd started again on the same socket: the host
                       handle (supervised) answers again within the backoff bound
connection reset,      do not apply to virtrio's code: libvirt's own client library
garbage bytes,         parses libvirtd's RPC (virtrio never sees its bytes), and the
oversize length        replies it hands over are bounded by libvirt's own limits
never answers          libvirtd stopped (SIGSTOP): the per-call deadline fires
slow reader            the domain's event stream: tests/channels/libvirt (bounded
                       subscriptions, the same Fanout as QMP's row)
=====================  ===========================================================
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

from tests.faults.hostile import freeze, pending_calls_fail_fast
from tests.peers.libvirtd import LibvirtGuest
from virtrio.errors import VirtrioTimeoutError
from virtrio.nurseries import Backoff
from virtrio.nurseries.host import open_host

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_libvirt_leftovers")]


async def test_sigkill_then_restart(libvirt_guest: LibvirtGuest) -> None:
    daemon = libvirt_guest.daemon
    bound = 0.2
    backoff = Backoff(initial=bound, maximum=bound, jitter=0)
    async with open_host(daemon.uri, backoff=backoff, call_timeout=30) as host:
        qmp, qga = host.qmp(libvirt_guest.name), host.qga(libvirt_guest.name)
        assert (await qmp.query_status()).running
        await qga.ping()
        process = daemon.procs["libvirtd"]
        os.kill(process.pid, signal.SIGSTOP)
        calls = iter(
            [lambda: qmp.query_status(timeout=30)] * 10 + [lambda: qga.ping(timeout=30)] * 10
        )
        try:
            await pending_calls_fail_fast(lambda: next(calls)(), process.kill, calls=20)
        finally:
            process.kill()
            await trio.to_thread.run_sync(process.wait)
            del daemon.procs["libvirtd"]
        await trio.to_thread.run_sync(daemon.start_libvirtd)
        # the deadline is the bound: one backoff, then one connect
        assert (await qmp.query_status(timeout=bound + 5)).running
        await qga.ping(timeout=10)


async def test_a_stopped_libvirtd_lets_the_deadline_fire(libvirt_guest: LibvirtGuest) -> None:
    daemon = libvirt_guest.daemon
    async with open_host(daemon.uri, call_timeout=30) as host:
        qmp = host.qmp(libvirt_guest.name)
        assert (await qmp.query_status()).running
        try:
            await freeze(daemon.procs["libvirtd"].pid)
            with pytest.raises(VirtrioTimeoutError):
                await qmp.query_status(timeout=0.3)
        finally:
            os.kill(daemon.procs["libvirtd"].pid, signal.SIGCONT)
        assert (await qmp.query_status(timeout=10)).running
