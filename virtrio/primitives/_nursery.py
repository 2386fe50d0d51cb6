"""The nursery behind every ``open_*`` context manager."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._errors import collapse_groups

__all__ = ["open_service_nursery"]


@asynccontextmanager
async def open_service_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a resource's background tasks that does not leak ``ExceptionGroup``.

    A context manager that hides its nursery must not hand Trio's group to its caller: errors
    leaving it go through :func:`~virtrio.primitives.collapse_groups` (one real error is
    raised as itself; several independent errors stay a group).
    """
    with collapse_groups():
        async with trio.open_nursery() as nursery:
            yield nursery
