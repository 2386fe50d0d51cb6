"""The leak check itself (tests/leaks.py): it finds what a test leaves, and only that."""

from __future__ import annotations

import os
import threading

from tests import leaks


class _Holder:
    """Closes its pipe when collected; put in a reference cycle, only the collector frees it."""

    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        self.me = self

    def __del__(self) -> None:
        os.close(self.read)
        os.close(self.write)


def test_an_fd_left_open_is_named() -> None:
    before = leaks.Snapshot.take()
    read, write = os.pipe()
    try:
        found = leaks.leaked(before)
    finally:
        os.close(read)
        os.close(write)
    assert [line.split(" -> ")[0] for line in found] == [f"fd {read}", f"fd {write}"]
    assert all("pipe:" in line for line in found)


def test_an_fd_held_only_by_garbage_is_collected_not_blamed() -> None:
    before = leaks.Snapshot.take()
    _Holder()  # unreachable at once, but in a cycle: open until a collection
    assert leaks.leaked(before) == []


def test_a_thread_still_busy_is_named_and_one_finishing_is_waited_for() -> None:
    release = threading.Event()
    quick = threading.Thread(target=lambda: None, name="quick")
    busy = threading.Thread(target=release.wait, name="busy")
    before = leaks.Snapshot.take()
    quick.start()
    busy.start()
    try:
        found = leaks.leaked(before)
    finally:
        release.set()
        busy.join()
    assert found == ["thread 'busy' still running"]
