"""The VM nursery against real QEMU: handles that survive QEMU being killed and restarted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.peers.qemu import BARE, BootedGuest
from virtrio.engine.guest import open_qemu
from virtrio.errors import ChannelUnavailableError, ConfigError
from virtrio.nurseries import Backoff, ChannelState, StateChange, open_vm


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.2, jitter=0)


def drain(sub: object) -> list[StateChange]:
    out = []
    while True:
        try:
            out.append(sub.receive_nowait())  # type: ignore[attr-defined]
        except trio.WouldBlock:
            return out


async def test_reconnects_by_itself_when_qemu_is_restarted(
    qemu_binary: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "vm"
    async with open_qemu(BARE, workdir=workdir) as qemu:
        address = qemu.qmp_address
        async with open_vm("t", qmp=address, backoff=fast_backoff, call_timeout=10) as vm:
            changes = vm.state_changes()
            stops = vm.events("STOP")
            assert (await vm.qmp.query_status()).running
            assert vm.channel_states() == {"qmp": ChannelState.CONNECTED}

            qemu.kill()
            await qemu.wait()
            seen: list[StateChange] = []
            with trio.fail_after(5):  # the loss is published promptly
                while not seen or seen[-1].state is not ChannelState.DISCONNECTED:
                    seen.append(await changes.receive())
            with pytest.raises(ChannelUnavailableError, match=r"t/qmp not connected after 0\.3 s"):
                await vm.qmp.query_status(timeout=0.3)
            async with open_qemu(BARE, workdir=workdir) as qemu2:
                assert qemu2.qmp_address == address
                status = await vm.qmp.query_status(timeout=10)  # waits for the reconnect
                assert status.running
                await vm.qmp.execute("stop")
                with trio.fail_after(5):
                    assert (await stops.receive()).name == "STOP"  # events survive reconnects
            seen += drain(changes)
    kinds = [c.state for c in seen]
    lost = next(c for c in seen if c.state is ChannelState.DISCONNECTED)
    assert lost.channel == "t/qmp"
    assert lost.error is not None
    assert ChannelState.RECONNECTING in kinds
    assert kinds.count(ChannelState.CONNECTED) >= 2


async def test_a_call_before_qemu_exists_waits_for_it(qemu_binary: str, tmp_path: Path) -> None:
    workdir = tmp_path / "vm"
    address = f"unix:{workdir / 'qmp.sock'}"
    async with open_vm("late", qmp=address, backoff=fast_backoff) as vm:
        # QEMU is not there yet: attempts fail and back off (two failed attempts seen)
        with vm.qmp.state_changes() as changes, trio.fail_after(10):
            change = await changes.receive()
            while not (change.state is ChannelState.DISCONNECTED and change.attempt >= 2):
                change = await changes.receive()
        assert change.error is not None, change
        assert vm.qmp.state in (ChannelState.DISCONNECTED, ChannelState.RECONNECTING)
        async with open_qemu(BARE, workdir=workdir):
            assert (await vm.qmp.query_status(timeout=10)).running


async def test_configuration_errors_come_first() -> None:
    with pytest.raises(ConfigError, match="invalid address 'nowhere'"):
        async with open_vm(qmp="nowhere"):
            pass
    async with open_vm("empty") as vm:
        with pytest.raises(ConfigError, match="VM empty has no guest-agent channel"):
            _ = vm.qga
        with pytest.raises(ConfigError, match="no QMP channel"):
            _ = vm.qmp


async def test_user_errors_come_out_bare(qemu_binary: str, tmp_path: Path) -> None:
    async with open_qemu(BARE, workdir=tmp_path / "vm") as qemu:
        with pytest.raises(KeyError, match="mine"):
            async with open_vm(qmp=qemu.qmp_address):
                raise KeyError("mine")


@pytest.mark.slow
async def test_qmp_and_guest_agent_of_the_demo_guest(demo_guest: BootedGuest) -> None:
    async with open_vm(
        "demo", qmp=demo_guest.qmp_address, qga=demo_guest.qga_address, connect_timeout=30
    ) as vm:
        result = await vm.qga.shell("uname -n", timeout=90)
        assert result.stdout_text == "virtrio-guest\n"
        assert (await vm.qmp.query_status()).status == "running"
        await vm.qmp.send_key("shift")
        states = vm.channel_states()
        assert states == {"qmp": ChannelState.CONNECTED, "qga": ChannelState.CONNECTED}


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"spice": "bogus"}, "spice='bogus'"),
        ({"qmp": "unix:"}, "qmp='unix:'"),
        ({"qga": "tcp://host:99999"}, "qga='tcp://host:99999'"),
        ({"qmp": "ws://host:1/qmp"}, "qmp='ws://host:1/qmp'"),
        ({"spice": "tls://nohost"}, "spice='tls://nohost'"),
        ({"call_timeout": 0}, "call_timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
    ],
)
def test_open_vm_itself_refuses_a_bad_address_or_option(
    options: dict[str, object], field: str
) -> None:
    # raised by the call, before any `async with`, so nothing starts and nothing retries
    with pytest.raises(ConfigError, match=re.escape(f"open_vm: {field}")):
        open_vm("bad", **options)  # type: ignore[arg-type]
