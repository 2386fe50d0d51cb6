"""The Trio implementation of libvirt's event loop: the callbacks' contract, then real libvirt."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
import trio
import trio.lowlevel

from virtrio.channels.libvirt import (
    EventKind,
    _eventloop,
    _timers,
    ensure_event_loop,
    event_loop_stats,
    open_connection,
)
from virtrio.channels.libvirt._eventloop import Handoff, _TrioEventImpl
from virtrio.channels.libvirt._fdpoll import READABLE, WRITABLE
from virtrio.errors import LocalProtocolError


class Recorder:
    """Collects callback calls with the thread they ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.freed: list[Any] = []
        self.threads: set[int] = set()
        self.event = trio.Event()

    def handle(self, watch: int, fd: int, events: int, opaque: Any) -> None:
        self.calls.append((watch, fd, events, opaque))
        self.threads.add(threading.get_ident())
        self.event.set()

    def timer(self, timer_id: int, opaque: Any) -> None:
        self.calls.append((timer_id, opaque))
        self.threads.add(threading.get_ident())
        self.event.set()

    def free(self, opaque: Any) -> None:
        self.freed.append(opaque)
        self.threads.add(threading.get_ident())


def attached(recorder: Recorder) -> _TrioEventImpl:
    impl = _TrioEventImpl(free=recorder.free)
    impl.attach(register=False)
    return impl


async def test_handles_registered_from_a_worker_thread_fire_on_the_trio_thread() -> None:
    rec = Recorder()
    impl = attached(rec)
    a, b = socket.socketpair()
    with a, b:
        watch = await trio.to_thread.run_sync(impl.add_handle, a.fileno(), READABLE, rec.handle, 7)
        assert watch > 0  # handed out at once, from the other thread
        b.send(b"x")
        with trio.fail_after(5):
            await rec.event.wait()
        assert rec.calls[0] == (watch, a.fileno(), READABLE, 7)
        assert rec.threads == {threading.get_ident()}
        assert impl.stats().watched_fds == 1

        # removal from a thread: the free callback is deferred to the Trio thread
        def remove() -> tuple[int, list[Any]]:
            return impl.remove_handle(watch), list(rec.freed)

        result, freed_inline = await trio.to_thread.run_sync(remove)
        assert (result, freed_inline) == (0, [])
        await trio.testing.wait_all_tasks_blocked()
        assert rec.freed == [7]
        assert impl.stats() == impl.stats().__class__(0, 0, 0, 0, 0)
        assert impl.remove_handle(watch) == -1  # unknown id


def test_a_free_asked_for_with_no_run_attached_runs_at_once_on_another_thread() -> None:
    """A connection's last domain object collected after the Trio run (or a connection used
    outside Trio) removes its handles then: the free callback (which closes libvirt's socket
    and eventfd) must not wait for a next run that may never come, nor run inside the remove
    call (libvirt may hold the connection's lock there)."""
    rec = Recorder()
    done = threading.Event()

    def free(opaque: Any) -> None:
        rec.free(opaque)
        done.set()

    impl = _TrioEventImpl(free=free)
    watch = impl.add_handle(0, READABLE, rec.handle, "socket")
    timer = impl.add_timeout(-1, rec.timer, "keepalive")
    assert impl.remove_handle(watch) == 0
    assert done.wait(5)
    done.clear()
    assert impl.remove_timeout(timer) == 0
    assert done.wait(5)
    assert sorted(rec.freed) == ["keepalive", "socket"]
    assert threading.get_ident() not in rec.threads
    assert impl.stats() == impl.stats().__class__(0, 0, 0, 0, 0)


async def test_update_handle_switches_direction_and_one_fd_serves_many_handles() -> None:
    rec = Recorder()
    impl = attached(rec)
    a, b = socket.socketpair()
    with a, b:
        w1 = impl.add_handle(a.fileno(), 0, rec.handle, "one")
        w2 = impl.add_handle(a.fileno(), READABLE, rec.handle, "two")
        assert impl.stats().watched_fds == 1  # in the set at once, from any thread
        impl.update_handle(w1, WRITABLE | READABLE)
        with trio.fail_after(5):
            await rec.event.wait()  # writable at once
        assert (w1, a.fileno(), WRITABLE, "one") in rec.calls
        assert impl.stats().watched_fds == 1  # one per fd, whatever its handles and directions
        impl.update_handle(w1, 0)
        b.send(b"y")
        rec.calls.clear()
        rec.event = trio.Event()
        with trio.fail_after(5):
            await rec.event.wait()
        assert {c[3] for c in rec.calls} == {"two"}
        impl.update_handle(w2, 0)  # nobody wants its events: out of the set
        assert impl.stats().watched_fds == 0
        rec.calls.clear()
        await trio.testing.wait_all_tasks_blocked()
        assert rec.calls == []  # the unread byte wakes nobody
        rec.event = trio.Event()
        impl.update_handle(w2, READABLE)
        with trio.fail_after(5):
            await rec.event.wait()
        assert rec.calls[0][3] == "two"
        impl.remove_handle(w1)
        impl.remove_handle(w2)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(rec.freed) == ["one", "two"]
        assert impl.stats().watched_fds == 0


async def test_fd_reuse_after_free_closes_it() -> None:
    """The fd leaves the set before the free callback closes it; a new fd of the same number
    is then watched afresh."""
    rec = Recorder()
    closed: list[int] = []
    a, b = socket.socketpair()

    def free_and_close(opaque: Any) -> None:
        a.close()  # what libvirt does in its free callback
        closed.append(opaque)

    impl = _TrioEventImpl(free=free_and_close)
    impl.attach(register=False)
    fd = a.fileno()
    watch = impl.add_handle(fd, READABLE, rec.handle, 1)
    await trio.testing.wait_all_tasks_blocked()
    impl.remove_handle(watch)
    await trio.testing.wait_all_tasks_blocked()
    assert closed == [1]
    c, d = socket.socketpair()
    with b, c, d:
        assert fd in (c.fileno(), d.fileno())  # the kernel reused the number
        reused = c if c.fileno() == fd else d
        other = d if reused is c else c
        impl.add_handle(fd, READABLE, rec.handle, 2)
        other.send(b"z")
        with trio.fail_after(5):
            await rec.event.wait()
        assert rec.calls[-1][3] == 2
        assert reused.recv(1) == b"z"


async def test_connections_come_and_go_with_no_task_of_their_own() -> None:
    """Every connection's socket is waited on by the loop's one task for its epoll set."""
    rec = Recorder()
    impl = attached(rec)
    await trio.testing.wait_all_tasks_blocked()
    assert impl._nursery is not None
    tasks = set(impl._nursery.child_tasks)  # the timer task and the epoll set's
    assert len(tasks) == 2
    for round_ in range(3):
        a, b = socket.socketpair()
        with a, b:
            watch = impl.add_handle(a.fileno(), READABLE, rec.handle, round_)
            rec.event = trio.Event()
            b.send(b"x")
            with trio.fail_after(5):
                await rec.event.wait()
            assert rec.calls[-1][3] == round_
            assert set(impl._nursery.child_tasks) == tasks
            a.recv(1)
            impl.remove_handle(watch)
            await trio.testing.wait_all_tasks_blocked()
            assert impl.stats().watched_fds == 0


async def test_timer_semantics() -> None:
    rec = Recorder()
    impl = attached(rec)
    off = impl.add_timeout(-1, rec.timer, "off")
    every_pass = impl.add_timeout(0, rec.timer, "zero")
    with trio.fail_after(5):
        while sum(1 for c in rec.calls if c[1] == "zero") < 3:
            await trio.lowlevel.checkpoint()  # fires on every pass of the loop
    impl.update_timeout(every_pass, -1)
    await trio.testing.wait_all_tasks_blocked()
    count = len(rec.calls)
    # the thing tested: a stretch of time in which the timer stays silent (the loop keeps
    # time with time.monotonic, so an autojump clock cannot stand in for it)
    await trio.sleep(0.05)
    assert len(rec.calls) == count  # -1: off
    assert impl.stats().timer_tasks == 0
    impl.update_timeout(off, 10)
    rec.event = trio.Event()
    with trio.fail_after(5):
        await rec.event.wait()
    assert rec.calls[-1] == (off, "off")
    assert rec.threads == {threading.get_ident()}
    assert impl.remove_timeout(off) == 0
    assert impl.remove_timeout(every_pass) == 0
    assert impl.remove_timeout(every_pass) == -1
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(rec.freed) == ["off", "zero"]
    assert impl.stats().timers == 0


async def test_a_failing_callback_does_not_stop_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: list[str] = []

    class Log:
        def exception(self, message: str, *args: object) -> None:
            logged.append(message % args)

    monkeypatch.setattr(_eventloop, "log", Log())
    monkeypatch.setattr(_timers, "log", Log())
    rec = Recorder()
    impl = attached(rec)

    fired = trio.Event()

    def boom(_timer: int, _opaque: Any) -> None:
        fired.set()
        raise RuntimeError("callback bug")

    bad = impl.add_timeout(0, boom, None)
    with trio.fail_after(5):
        await fired.wait()
    impl.remove_timeout(bad)
    good = impl.add_timeout(1, rec.timer, "ok")
    with trio.fail_after(5):
        await rec.event.wait()
    impl.remove_timeout(good)
    assert logged[0] == "libvirt timer callback failed"


def test_the_loop_serves_one_trio_run_at_a_time() -> None:
    async def hold(ready: threading.Event, release: threading.Event) -> None:
        ensure_event_loop()
        ready.set()
        await trio.to_thread.run_sync(release.wait)

    ready, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=trio.run, args=(hold, ready, release))
    thread.start()
    try:
        ready.wait(10)

        async def second() -> None:
            ensure_event_loop()

        with pytest.raises(LocalProtocolError, match="another Trio run"):
            trio.run(second)
    finally:
        release.set()
        thread.join(10)


async def test_libvirt_events_and_no_leftovers_on_test_driver() -> None:
    async with open_connection("test:///default") as conn:
        with conn.events([EventKind.LIFECYCLE], domain="test") as events:
            dom = await conn.lookup("test")
            await conn.call(dom.suspend)
            await conn.call(dom.resume)
            await conn.call(dom.destroy)
            await conn.call(dom.create)
            with trio.fail_after(5):
                got = [(await events.receive()).event for _ in range(4)]
        assert got == ["SUSPENDED", "RESUMED", "STOPPED", "STARTED"]
        del dom
    await trio.testing.wait_all_tasks_blocked()
    stats = event_loop_stats()
    assert (stats.handles, stats.timers, stats.watched_fds, stats.timer_tasks) == (0, 0, 0, 0)


async def test_updating_a_timer_to_the_same_period_restarts_it_in_place() -> None:
    """libvirt restarts its keepalive timer on every message: no wake-up of the loop for it."""
    rec = Recorder()
    impl = attached(rec)
    timer = impl.add_timeout(300, rec.timer, "ka")
    await trio.testing.wait_all_tasks_blocked()
    sleep = impl._timer_sleep
    assert sleep is not None
    # the thing tested: real time past one period (time.monotonic, not Trio's clock)
    for _ in range(15):  # 15 x 30 ms: well past one period, restarted each time
        await trio.sleep(0.03)
        impl.update_timeout(timer, 300)
        assert not impl._scheduled  # no reconciling asked for
    assert rec.calls == []
    with trio.fail_after(5):
        await rec.event.wait()  # fires one period after the last restart
    assert rec.calls == [(timer, "ka")]
    impl.remove_timeout(timer)
    await trio.testing.wait_all_tasks_blocked()
    assert rec.freed == ["ka"]


async def test_one_task_keeps_time_for_every_timer() -> None:
    rec = Recorder()
    impl = attached(rec)
    await trio.testing.wait_all_tasks_blocked()
    assert impl._nursery is not None
    tasks = set(impl._nursery.child_tasks)  # the timer task and the epoll set's
    assert len(tasks) == 2
    slow = impl.add_timeout(60_000, rec.timer, "slow")
    fast = impl.add_timeout(10_000, rec.timer, "fast")
    await trio.testing.wait_all_tasks_blocked()
    assert set(impl._nursery.child_tasks) == tasks
    assert impl.stats().timer_tasks == 2
    impl.update_timeout(fast, 20)  # shorter than the sleep under way: it is cut short
    with trio.fail_after(5):
        await rec.event.wait()
    assert rec.calls[0] == (fast, "fast")
    impl.update_timeout(fast, -1)
    assert impl.stats().timer_tasks == 1
    for timer in (slow, fast):
        impl.remove_timeout(timer)
    await trio.testing.wait_all_tasks_blocked()
    assert sorted(rec.freed) == ["fast", "slow"]
    assert impl.stats().timer_tasks == 0


async def test_a_blocking_call_wakes_the_trio_thread_once_at_its_end() -> None:
    rec = Recorder()
    impl = attached(rec)
    await trio.testing.wait_all_tasks_blocked()
    a, b = socket.socketpair()
    with a, b:

        def call_with_callbacks() -> tuple[bool, int, int]:
            # what libvirt's open does from the worker thread: a handle and a timer
            with impl.batched_kicks():
                watch = impl.add_handle(a.fileno(), READABLE, rec.handle, "sock")
                impl.add_timeout(-1, rec.timer, "keepalive")
                with impl.batched_kicks():  # nested: still held by the outer block
                    impl.update_handle(watch, 0)
                    impl.update_handle(watch, READABLE)
                asked_midway, watched_midway = impl._scheduled, impl.stats().watched_fds
            return asked_midway, watch, watched_midway

        asked_midway, watch, watched_midway = await trio.to_thread.run_sync(call_with_callbacks)
        assert not asked_midway  # the Trio side was not woken mid-call...
        assert watched_midway == 1  # ...and the socket was in the set all along
        b.send(b"x")
        with trio.fail_after(5):
            await rec.event.wait()
        assert rec.calls[0] == (watch, a.fileno(), READABLE, "sock")  # (level-triggered: again)
        impl.remove_handle(watch)
        await trio.testing.wait_all_tasks_blocked()
        assert rec.freed == ["sock"]


async def test_a_call_hands_its_wake_up_to_the_task_waiting_for_it() -> None:
    """The loop is reconciled by the task the result wakes, with no wake-up of its own; a
    call its caller gave up on sends its own."""
    rec = Recorder()
    impl = attached(rec)
    await trio.testing.wait_all_tasks_blocked()
    handoff = Handoff()

    def call() -> tuple[int, bool]:
        with impl.batched_kicks(handoff):
            timer = impl.add_timeout(10_000, rec.timer, "keepalive")
        return timer, impl._scheduled

    timer, asked = await trio.to_thread.run_sync(call)
    assert not asked
    assert impl._retime  # the timer task has not been told yet
    impl.take_handoff(handoff)
    assert not impl._retime  # at once, on this thread
    impl.take_handoff(handoff)  # twice: nothing more

    handoff = Handoff()
    impl.take_handoff(handoff)  # the caller leaves first

    def abandoned() -> bool:
        with impl.batched_kicks(handoff):
            impl.remove_timeout(timer)
        return impl._scheduled

    assert await trio.to_thread.run_sync(abandoned)
    await trio.testing.wait_all_tasks_blocked()
    assert rec.freed == ["keepalive"]


async def test_a_handle_removed_after_its_fd_was_closed_leaves_the_set_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kernel drops a closed fd from an epoll set by itself: taking it out again is no
    error (only an fd that cannot be watched at all is logged)."""
    rec = Recorder()
    impl = attached(rec)
    a, b = socket.socketpair()
    with b:
        watch = impl.add_handle(a.fileno(), READABLE, rec.handle, "gone")
        assert impl.stats().watched_fds == 1
        a.close()
        assert impl.remove_handle(watch) == 0
    assert impl.stats().watched_fds == 0
    await trio.testing.wait_all_tasks_blocked()
    assert rec.freed == ["gone"]
    assert "cannot be watched" not in caplog.text
