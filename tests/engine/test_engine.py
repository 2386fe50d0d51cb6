"""open_engine against real QEMUs: events with sequence numbers, waits that cannot miss, and no
QEMU left behind whether the block ends normally, is cancelled or raises."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import trio

from virtrio.engine import open_engine
from virtrio.engine.config import parse_fleet
from virtrio.errors import ConfigError, VirtrioTimeoutError
from virtrio.nurseries import MarkExpiredError

BARE_FLEET = textwrap.dedent("""\
    defaults: {backoff_initial: 0.05, backoff_max: 0.2, stop_grace: 2}
    vms:
      - id: a
        tags: [bare, first]
        qemu: {machine: none}
        channels:
          qmp: {kind: qmp}
      - id: b
        tags: [bare]
        qemu: {machine: none}
        channels:
          qmp: {kind: qmp}
""")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive either: reaped means gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_vms_events_and_statistics(qemu_binary: str, tmp_path: Path) -> None:
    fleet = parse_fleet(BARE_FLEET)
    async with open_engine(fleet, workdir=tmp_path) as engine:
        await engine.wait_connected(timeout=30)
        assert [vm.name for vm in engine.vms()] == ["a", "b"]
        assert [vm.name for vm in engine.vms(tag="first")] == ["a"]
        with pytest.raises(ConfigError, match="no VM 'c' in the fleet"):
            engine.vm("c")
        stats = engine.statistics()
        assert stats.vms == {"connected": 2}
        assert stats.channels == {"connected": 2}

        seq = engine.mark()
        with engine.events(vm="b", kinds=("qmp",)) as sub:
            await engine.vm("b").qmp.execute("stop")
            event = await sub.receive()
        assert (event.vm, event.kind, event.name) == ("b", "qmp", "STOP")
        assert event.seq > seq
        # the event arrived before the wait began: a wait after the mark still finds it
        found = await engine.wait_event("STOP", vm="b", after=seq, timeout=5)
        assert found == event
        # ... and a wait from now does not see it
        with pytest.raises(VirtrioTimeoutError, match="no event STOP"):
            await engine.wait_event("STOP", vm="b", timeout=0.2)
        # every event is numbered once, in order
        numbers = [e.seq for e in engine.events_since(0)]
        assert numbers == list(range(1, engine.mark() + 1))

        # a channel that drops and comes back counts as a reconnect
        seq = engine.mark()
        engine.qemu("a").kill()
        exited = await engine.wait_event("exited", vm="a", channel="qemu", after=seq, timeout=10)
        assert exited.data["returncode"] == -9
        await engine.wait_event("disconnected", vm="a", kind="state", after=seq, timeout=10)
        assert engine.statistics().vms == {"connected": 1, "down": 1}


async def test_an_expired_event_mark_is_a_clear_error(qemu_binary: str, tmp_path: Path) -> None:
    async with open_engine(parse_fleet(BARE_FLEET), workdir=tmp_path, event_history=2) as engine:
        await engine.wait_connected(timeout=30)
        for _ in range(2):
            await engine.vm("a").qmp.execute("stop")
            await engine.vm("a").qmp.execute("cont")
        await engine.wait_event("RESUME", vm="a", after=engine.mark() - 1, timeout=5)
        with pytest.raises(MarkExpiredError, match="fell out of the history"):
            await engine.wait_event("STOP", after=0, timeout=1)


async def test_no_qemu_survives_a_normal_exit(qemu_binary: str, tmp_path: Path) -> None:
    async with open_engine(parse_fleet(BARE_FLEET), workdir=tmp_path) as engine:
        await engine.wait_connected(timeout=30)
        pids = [engine.qemu(v).pid for v in ("a", "b")]
        assert all(alive(p) for p in pids)
    assert not any(alive(p) for p in pids)
    # they quit through QMP (no signal needed): QEMU logs the signal when it gets one
    log = (tmp_path / "a" / "qemu.log").read_text()
    assert "terminating on signal" not in log


async def test_no_qemu_survives_cancellation(qemu_binary: str, tmp_path: Path) -> None:
    pids: list[int] = []
    with trio.move_on_after(60) as scope:
        async with open_engine(parse_fleet(BARE_FLEET), workdir=tmp_path) as engine:
            await engine.wait_connected(timeout=30)
            pids = [engine.qemu(v).pid for v in ("a", "b")]
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert len(pids) == 2
    assert not any(alive(p) for p in pids)


async def test_no_qemu_survives_an_exception_in_the_block(qemu_binary: str, tmp_path: Path) -> None:
    pids: list[int] = []

    async def fail_inside() -> None:
        async with open_engine(parse_fleet(BARE_FLEET), workdir=tmp_path) as engine:
            await engine.wait_connected(timeout=30)
            pids.extend(engine.qemu(v).pid for v in ("a", "b"))
            raise ZeroDivisionError("inside the engine block")

    with pytest.raises(ZeroDivisionError, match="inside the engine block"):
        await fail_inside()
    assert len(pids) == 2
    assert not any(alive(p) for p in pids)


async def test_a_stuck_qemu_is_killed_after_the_grace(qemu_binary: str, tmp_path: Path) -> None:
    """QEMU stopped with SIGSTOP answers neither quit nor SIGTERM: SIGKILL after the grace."""
    import signal

    fleet = parse_fleet(BARE_FLEET.replace("stop_grace: 2", "stop_grace: 0.5"))
    async with open_engine(fleet, workdir=tmp_path) as engine:
        await engine.wait_connected(timeout=30)
        pid = engine.qemu("a").pid
        os.kill(pid, signal.SIGSTOP)
    assert not alive(pid)
