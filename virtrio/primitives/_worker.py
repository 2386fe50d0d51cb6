"""A blocking call in a worker thread, at the cost of the thread hand-off and nothing more.

:func:`trio.to_thread.run_sync` does the same with machinery a library's hot path does not need
(a scheduler pass to take the limiter, a copy of the context, the ``trio.from_thread`` plumbing):
on this project's 2-core machines a no-op costs 140-150 µs through it, 75-85 µs through Trio's
own thread cache (:func:`trio.lowlevel.start_thread_soon`), which is what this uses. Each libvirt
call and each store query makes one such trip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

__all__ = ["run_in_worker"]

R = TypeVar("R")


async def run_in_worker(
    fn: Callable[[], R],
    *,
    limiter: trio.CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
) -> R:
    """Run ``fn()`` in a thread of Trio's cache and return its result (or raise its exception).

    A checkpoint. ``limiter``: a token is held from before the thread starts until it returns,
    also when the caller has left (so a limiter's tokens count the threads still running).
    ``abandon_on_cancel``: a cancelled caller leaves at once and the thread finishes alone, its
    result dropped; otherwise cancellation waits for the thread (the result is returned, and
    the cancellation is seen at the caller's next checkpoint).
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    holder = object()
    if limiter is not None:
        try:
            limiter.acquire_on_behalf_of_nowait(holder)
        except trio.WouldBlock:
            await limiter.acquire_on_behalf_of(holder)
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    waiting = True

    def finished(result: outcome.Outcome[R]) -> None:  # in the Trio thread
        nonlocal waiting
        if limiter is not None:
            limiter.release_on_behalf_of(holder)
        if waiting:
            waiting = False
            trio.lowlevel.reschedule(task, result)

    def deliver(result: outcome.Outcome[R]) -> None:  # in the worker thread
        # an abandoned call may outlive the run: then there is nobody to tell
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(finished, result)

    def abort(_: object) -> trio.lowlevel.Abort:
        nonlocal waiting
        if not abandon_on_cancel:
            return trio.lowlevel.Abort.FAILED
        waiting = False
        return trio.lowlevel.Abort.SUCCEEDED

    try:
        trio.lowlevel.start_thread_soon(fn, deliver)
    except BaseException:
        if limiter is not None:
            limiter.release_on_behalf_of(holder)
        raise
    value: R = await trio.lowlevel.wait_task_rescheduled(abort)  # the outcome, unwrapped
    return value
