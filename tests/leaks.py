"""After every test: no Trio task, file descriptor, thread or child process left over.

``tests/conftest.py`` turns this on for the whole suite (an autouse fixture and a hook). What
counts as left over:

* **tasks**: every Trio run of a test carries a :class:`TaskLeakInstrument`. When the run's main
  task (pytest-trio's test bootstrap, which has torn every async fixture down by then) exits,
  every other task spawned during the run must be gone, save Trio's own system tasks and the
  run-scoped ones listed in :data:`RUN_SCOPED_TASKS`. A task still alive then (a system task of
  the library, or one nobody stops) is a leak.
* **fds**: entries of ``/proc/self/fd`` that were not there before the test, named by what they
  point at.
* **threads**: threads alive after the test that were not before, except Trio's thread-cache
  workers that are idle (parked for reuse); a busy worker (an abandoned ``to_thread`` call still
  running) is a leak.
* **children**: child processes of this process (zombies included: unreaped is leaked) that were
  not there before.

The checks run once the test's own fixtures have been torn down (function-scoped fixtures are
the test's), so a fixture that leaks fails its test as well; session- and module-scoped fixtures
are set up before the snapshot and are not blamed.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

__all__ = [
    "RUN_SCOPED_TASKS",
    "adopt",
    "Snapshot",
    "TaskLeakInstrument",
    "leaked",
    "run_with_checks",
]

#: System tasks that live exactly as long as the Trio run by design and end with it, with
#: every task under them: libvirt's event loop is one per process, and its waiter and timer
#: tasks mirror what libvirt has registered, which may be freed only by the garbage collector
#: after the run; ``no_libvirt_leftovers`` (tests/peers/libvirtd.py) checks that nothing stays
#: registered once it has run.
RUN_SCOPED_TASKS = frozenset({"virtrio-libvirt-event-loop"})

#: Child processes a session- or module-scoped fixture started during a test (a restarted
#: daemon): theirs, not the test's. See :func:`adopt`.
_ADOPTED: set[int] = set()


def adopt(pid: int) -> None:
    """Mark child ``pid`` as owned by a fixture that outlives the test that started it."""
    _ADOPTED.add(pid)


#: How long a thread just done with its last call may take to return.
_SETTLE = 2.0


class TaskLeakInstrument(trio.abc.Instrument):
    """Records the tasks still alive when a run's main task exits (see the module docstring)."""

    def __init__(self) -> None:
        self._alive: dict[trio.lowlevel.Task, None] = {}
        #: ``"name (in a nursery of parent)"`` of each task alive when the main task exited.
        self.leaked: list[str] = []

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self._alive[task] = None

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self._alive.pop(task, None)
        if task is not _main_task():
            return
        root = trio.lowlevel.current_root_task()
        for other in self._alive:
            if other is root or _run_scoped(other) or _is_trio_internal(other):
                continue
            parent = other.parent_nursery.parent_task.name if other.parent_nursery else "?"
            self.leaked.append(f"{other.name} (in a nursery of {parent})")


def _run_scoped(task: trio.lowlevel.Task | None) -> bool:
    while task is not None:
        if task.name in RUN_SCOPED_TASKS:
            return True
        task = task.parent_nursery.parent_task if task.parent_nursery is not None else None
    return False


def _main_task() -> trio.lowlevel.Task | None:
    # Trio names no public accessor for the task running the function given to trio.run
    runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
    return runner.main_task  # type: ignore[no-any-return]


def _is_trio_internal(task: trio.lowlevel.Task) -> bool:
    return task.name.startswith("<TrioToken.run_sync_soon task>") or task.name.startswith("trio.")


def run_with_checks(run: Callable[..., Any], instrument: TaskLeakInstrument) -> Callable[..., Any]:
    """pytest-trio's ``run`` with the task instrument added."""

    def checked_run(fn: Callable[[], Any], *, clock: Any = None, instruments: Any = ()) -> Any:
        return run(fn, clock=clock, instruments=[*instruments, instrument])

    return checked_run


@attrs.frozen
class Snapshot:
    """What the process holds at one moment."""

    fds: dict[int, str]
    threads: frozenset[threading.Thread]
    children: frozenset[int]

    @classmethod
    def take(cls) -> Snapshot:
        """Now."""
        return cls(_fds(), frozenset(_busy_threads()), frozenset(_children()))


def _fds() -> dict[int, str]:
    found = {}
    for entry in Path("/proc/self/fd").iterdir():
        try:
            found[int(entry.name)] = os.readlink(entry)
        except OSError:
            continue  # the fd of the listing itself, closed by now
    return found


def _busy_threads() -> list[threading.Thread]:
    from trio._core._thread_cache import THREAD_CACHE

    idle = {worker._thread for worker in THREAD_CACHE._idle_workers}
    return [t for t in threading.enumerate() if t.is_alive() and t not in idle]


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def _describe_child(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"pid {pid}"
    state = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                  if line.startswith("State:")), "?")  # fmt: skip
    return f"pid {pid} [{state}] {cmdline[:120].strip() or '(no command line)'}"


def leaked(before: Snapshot) -> list[str]:
    """What is held now that was not in ``before``, one line each (empty: nothing leaked).

    A thread that was told to stop gets a short join to finish returning; fds are compared
    after that. Only when an fd looks left open does a garbage collection run (an object in a
    reference cycle may still hold it; its ResourceWarning then fails the test in pytest) and
    the fds are compared again: a full collection costs tens to hundreds of ms in a test
    process, too much to pay after every test."""
    deadline = time.monotonic() + _SETTLE
    _join_new_threads(before, deadline)
    after = Snapshot.take()
    if any(before.fds.get(fd) != target for fd, target in after.fds.items()):
        gc.collect()
        _join_new_threads(before, deadline)  # a finaliser may hand a close to a thread
        after = Snapshot.take()
    threads = after.threads - before.threads
    children = after.children - before.children - _ADOPTED
    fds = {fd: target for fd, target in after.fds.items() if before.fds.get(fd) != target}
    problems = [f"thread {t.name!r} still running" for t in threads]
    problems += [f"child process {_describe_child(pid)} not reaped" for pid in sorted(children)]
    problems += [
        f"fd {fd} -> {target} left open{_socket_peer(target)}" for fd, target in sorted(fds.items())
    ]
    return problems


def _join_new_threads(before: Snapshot, deadline: float) -> None:
    for thread in set(_busy_threads()) - before.threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _socket_peer(target: str) -> str:
    """`` (unix PATH)`` for a Unix socket fd with a path, to tell what it is."""
    if not target.startswith("socket:["):
        return ""
    inode = target[len("socket:[") : -1]
    try:
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 7 and fields[6] == inode:
                return f" (unix {fields[7]})" if len(fields) > 7 else " (unix, unnamed)"
    except OSError:
        pass
    return ""
