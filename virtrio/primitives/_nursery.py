"""The nursery behind every ``open_*`` context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["open_service_nursery"]


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a resource's background tasks that does not leak ``ExceptionGroup``.

    Trio wraps every error leaving a nursery in a group — including the caller's own exception
    raised in the body of ``async with open_x() as x:``. A context manager that hides its
    nursery must not hand that to its caller: when there is one error (the usual case), it is
    raised as itself; only several independent errors stay a group.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
