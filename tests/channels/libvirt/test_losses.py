"""A lost connection told by the event loop (virtrio/channels/libvirt/_losses.py): the watches
a thread adds while tracking are its connection's; their removal is the loss."""

from __future__ import annotations

import socket
import threading

import trio
import trio.testing

from tests.channels.libvirt.test_eventloop import Recorder, attached
from virtrio.channels.libvirt._fdpoll import READABLE
from virtrio.channels.libvirt._losses import DROPPED, KEEPALIVE_TIMEOUT, LossTracker


def test_a_tracked_watch_removed_is_a_loss_told_once() -> None:
    tracker, lost = LossTracker(), []
    with tracker.track(lost.append) as watch:
        tracker.handle_added(1)
        tracker.timer_added(2)
    tracker.handle_added(3)  # not tracking: nobody's
    assert (watch.handles, watch.timers, tracker.tracked()) == ({1}, {2}, 2)
    tracker.handle_removed(3)
    assert lost == []
    tracker.handle_removed(1)
    tracker.handle_removed(1)
    assert lost == [DROPPED]
    assert not watch.armed
    tracker.timer_removed(2)
    assert tracker.tracked() == 0


def test_a_disarmed_watch_removed_is_no_loss() -> None:
    tracker, lost = LossTracker(), []
    with tracker.track(lost.append) as watch:
        tracker.handle_added(1)
    watch.disarm()
    tracker.handle_removed(1)
    assert lost == []
    assert tracker.tracked() == 0


def test_removal_while_the_connections_own_timer_fires_is_a_keepalive_timeout() -> None:
    tracker, lost, other = LossTracker(), [], []
    with tracker.track(lost.append):
        tracker.handle_added(1)
        tracker.timer_added(2)
    with tracker.track(other.append):
        tracker.handle_added(3)
    with tracker.firing(2):  # another connection's timer firing says nothing about this one
        tracker.handle_removed(3)
    with tracker.firing(2):
        tracker.handle_removed(1)
    assert (lost, other) == ([KEEPALIVE_TIMEOUT], [DROPPED])


def test_tracking_is_per_thread() -> None:
    tracker, lost = LossTracker(), []

    def elsewhere() -> None:
        tracker.handle_added(7)

    with tracker.track(lost.append) as watch:
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert (watch.handles, tracker.tracked()) == (set(), 0)


async def test_the_event_loop_tells_the_tracker_and_fires_timers_as_firing() -> None:
    rec = Recorder()
    impl = attached(rec)
    lost: list[str] = []
    a, b = socket.socketpair()
    with a, b:

        def open_like_libvirt() -> tuple[int, int]:
            with impl.losses.track(lost.append):
                return (
                    impl.add_handle(a.fileno(), READABLE, rec.handle, "sock"),
                    impl.add_timeout(-1, rec.timer, "keepalive"),
                )

        watch, timer = await trio.to_thread.run_sync(open_like_libvirt)

        def dead_peer(timer_id: int, opaque: object) -> None:  # what libvirt's keepalive does
            impl.remove_handle(watch)

        impl._timers[timer].cb = dead_peer
        impl.update_timeout(timer, 0)
        with trio.fail_after(5):
            while not lost:
                await trio.sleep(0.001)
        assert lost == [KEEPALIVE_TIMEOUT]
        impl.remove_timeout(timer)
        await trio.testing.wait_all_tasks_blocked()
    assert impl.losses.tracked() == 0
