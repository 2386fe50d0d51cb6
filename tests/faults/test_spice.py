"""The fault matrix for Spice, against the real Spice server (QEMU's).

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       QEMU stopped (SIGSTOP) under 5 pending ``wait_screen_change``
                       calls, then SIGKILL: all fail with ConnectionLostError within
                       100 ms
peer restarted         not played here yet: the supervised handle (``vm.spice``) over
                       a Spice server restarted on the same socket
connection reset,      not played here yet (a hostile Spice server)
garbage bytes,
oversize length
never answers          QEMU stopped (SIGSTOP): ``wait_screen_change``'s deadline fires
slow reader            not played here yet (display updates nobody reads)
=====================  ===========================================================
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio.testing

from tests.faults.hostile import pending_calls_fail_fast
from tests.peers.spice import SpiceVM
from virtrio.channels.spice import open_spice_session
from virtrio.errors import VirtrioTimeoutError


async def test_sigkill_fails_every_pending_call_fast(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        await spice.screenshot(timeout=30)  # every channel the call needs is up
        os.kill(spice_vm.proc.pid, signal.SIGSTOP)
        # the waits are for unsolicited updates: let the server really stop (the signal is
        # asynchronous), then the client read what it had sent before, so none is answered
        flags = os.WSTOPPED | os.WNOWAIT  # WNOWAIT: the stop stays to be reaped by wait()
        await trio.to_thread.run_sync(os.waitid, os.P_PID, spice_vm.proc.pid, flags)
        await trio.testing.wait_all_tasks_blocked()
        await pending_calls_fail_fast(
            lambda: spice.wait_screen_change(timeout=30), spice_vm.proc.kill, calls=5
        )
        spice_vm.proc.wait()


async def test_a_stopped_server_lets_the_deadline_fire(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        await spice.screenshot(timeout=30)
        os.kill(spice_vm.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(VirtrioTimeoutError):
                await spice.wait_screen_change(timeout=0.3)
        finally:
            os.kill(spice_vm.proc.pid, signal.SIGCONT)
