"""The fault matrix for Spice, against the real Spice server (QEMU's).

=====================  ===========================================================
fault                  how it is played
=====================  ===========================================================
SIGKILL mid-call       QEMU stopped (SIGSTOP) under 5 pending ``wait_screen_change``
                       calls, then SIGKILL: all fail with ConnectionLostError within
                       100 ms
peer restarted         real QEMU killed and started again (same command line) on the
                       same socket path: ``vm.spice`` reports DISCONNECTED, then
                       screenshots again within one backoff (0.2 s) plus the link
connection reset       hostile server aborts (RST) after reading the client's link
                       message: ConnectionLostError naming the reset
garbage bytes          hostile server answers the link with bytes that are not
                       Spice: SpiceProtocolError (bad link magic)
oversize length        hostile server's link header claims 4 GiB: SpiceProtocolError
                       at once, peak RSS bounded
never answers          QEMU stopped (SIGSTOP): ``wait_screen_change``'s deadline fires
slow reader            QEMU's monitor on a spiceport answers 40 ``help`` lines nobody
                       reads: the port's buffer fills (256 messages), the channel stops
                       reading its socket and stays up; then every answer arrives whole
                       (was SpiceProtocolError "receive buffer full", channel killed)
=====================  ===========================================================
"""

from __future__ import annotations

import functools
import os
import signal
import struct
import subprocess
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from tests.faults.hostile import (
    MIB,
    PeakRss,
    freeze,
    hostile_server,
    pending_calls_fail_fast,
    reset,
)
from tests.peers import stop_process
from tests.peers.spice import SpiceVM
from virtrio.channels.spice import SpiceProtocolError, open_spice_session
from virtrio.errors import ConnectionLostError, VirtrioTimeoutError
from virtrio.nurseries import Backoff, ChannelState, open_vm


async def _freeze_and_drain(pid: int) -> None:
    """The waits below are for unsolicited updates: stop the server, then let the client read
    what the server had sent before, so that nothing answers them."""
    await freeze(pid)
    await trio.testing.wait_all_tasks_blocked()


async def test_sigkill_fails_every_pending_call_fast(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        await spice.screenshot(timeout=30)  # every channel the call needs is up
        await _freeze_and_drain(spice_vm.proc.pid)
        await pending_calls_fail_fast(
            lambda: spice.wait_screen_change(timeout=30), spice_vm.proc.kill, calls=5
        )
        spice_vm.proc.wait()


async def test_a_stopped_server_lets_the_deadline_fire(spice_vm: SpiceVM) -> None:
    async with open_spice_session(spice_vm.address) as spice:
        await spice.screenshot(timeout=30)
        try:
            # as above: an update sent before the stop took hold must not count as a change
            await _freeze_and_drain(spice_vm.proc.pid)
            with pytest.raises(VirtrioTimeoutError):
                await spice.wait_screen_change(timeout=0.3)
        finally:
            os.kill(spice_vm.proc.pid, signal.SIGCONT)


def _link_peer(answer: bytes | None) -> Callable[[trio.SocketStream], Awaitable[None]]:
    """A hostile Spice server: reads the client's link message, then sends ``answer`` (or, for
    None, resets the connection)."""

    async def peer(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        if answer is None:
            reset(stream)
        else:
            await stream.send_all(answer)
        await trio.sleep_forever()

    return peer


async def test_connection_reset_at_link() -> None:
    async with hostile_server(_link_peer(None)) as address:
        with trio.fail_after(10), pytest.raises(ConnectionLostError, match="reset"):
            async with open_spice_session(address, connect_timeout=5):
                pass  # pragma: no cover


async def test_garbage_bytes_at_link_are_a_protocol_error() -> None:
    async with hostile_server(_link_peer(b"\x00\x13garbage{]\r\n\xff\xfe\xfd\xfc\xfb")) as address:
        with trio.fail_after(10), pytest.raises(SpiceProtocolError, match="bad link magic"):
            async with open_spice_session(address, connect_timeout=5):
                pass  # pragma: no cover


async def test_oversize_link_length_is_refused_with_memory_bounded() -> None:
    header = struct.pack(
        "<IIII",
        0x51444552,  # REDQ
        2,
        2,
        0xFFFFFFFF,
    )
    with PeakRss() as rss:
        async with hostile_server(_link_peer(header)) as address:
            with trio.fail_after(10), pytest.raises(SpiceProtocolError, match="out of range"):
                async with open_spice_session(address, connect_timeout=5):
                    pass  # pragma: no cover
    assert rss.growth < 16 * MIB, f"peak RSS grew {rss.growth / MIB:.1f} MiB"


MONITOR = "org.virtrio.monitor"
#: QEMU's human monitor on a spiceport: every ``help`` line typed into the port floods it back.
MONITOR_ON_A_PORT = (
    "-chardev", f"spiceport,id=mon0,name={MONITOR}", "-mon", "chardev=mon0,mode=readline",
)  # fmt: skip


async def test_a_slow_port_reader_back_pressures_and_loses_nothing(
    spice_vm_factory: Callable[..., SpiceVM],
) -> None:
    vm = spice_vm_factory(extra_args=MONITOR_ON_A_PORT)
    commands = 40
    async with open_spice_session(vm.address) as spice:
        port = await spice.port(MONITOR)
        await port.send_all(b"help\n" * commands)  # nobody reads while QEMU answers them all
        with trio.fail_after(30):
            while port._send.statistics().current_buffer_used < 256:  # the buffer fills up
                await trio.sleep(0.01)
        assert port.channel.is_connected  # a full buffer is no error: the socket waits
        seen = b""
        with trio.fail_after(60):
            while seen.count(b"(qemu) ") < commands + 1:  # the first prompt, one per command
                chunk = await port.receive_some()
                assert chunk, f"port closed; got {seen[-200:]!r}"
                seen += chunk
        one = seen.split(b"(qemu) ")[1]  # the echo of "help" then its answer
        assert len(one) > 1000
        assert seen.count(one) == commands  # every answer whole, in order
        assert port.channel.is_connected


async def test_restart_on_the_same_address(spice_vm: SpiceVM) -> None:
    bound = 0.2  # the backoff's maximum: a restarted peer is retried at least this often
    fast = lambda: Backoff(initial=bound, maximum=bound, jitter=0)  # noqa: E731
    async with open_vm("s", spice=spice_vm.address, backoff=fast, connect_timeout=5) as vm:
        assert (await vm.spice.screenshot(timeout=30)).startswith(b"\x89PNG")
        with vm.state_changes() as changes:
            spice_vm.proc.kill()
            spice_vm.proc.wait()
            with trio.fail_after(5):
                while (await changes.receive()).state is not ChannelState.DISCONNECTED:
                    pass
        # the same command line: a new QEMU's Spice server on the same socket path
        relaunch = functools.partial(
            subprocess.Popen,
            spice_vm.proc.args,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        spice_vm.proc = await trio.to_thread.run_sync(relaunch)
        try:
            # the deadline is the bound: one backoff, then one connect, link and first frame
            assert (await vm.spice.screenshot(timeout=bound + 10)).startswith(b"\x89PNG")
        finally:
            stop_process(spice_vm.proc)
