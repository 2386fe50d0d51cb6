"""Blocking libvirt calls from Trio: :func:`run_blocking` runs one in a worker thread within a
deadline, and :func:`_libvirt` imports libvirt once, quietly."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from virtrio.errors import VirtrioTimeoutError
from virtrio.primitives import run_in_worker

from ._errors import translate_error
from ._eventloop import Handoff, batched_kicks, take_handoff

__all__ = ["run_blocking"]

R = TypeVar("R")


@functools.cache
def _libvirt() -> Any:
    """Import libvirt once, with its default stderr error printer silenced."""
    try:
        import libvirt
    except ImportError as exc:  # pragma: no cover - the extra is installed in tests
        raise ImportError("libvirt support needs `pip install virtrio[libvirt]`") from exc
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


async def run_blocking(
    fn: Callable[..., R],
    *args: Any,
    what: str,
    uri: str,
    timeout: float = math.inf,
    limiter: trio.CapacityLimiter | None = None,
    connecting: bool = False,
) -> R:
    """Run the blocking libvirt call ``fn(*args)`` in a worker thread within ``timeout`` seconds.

    Raises:
        VirtrioTimeoutError: no result in time (the thread is abandoned and finishes alone).
        VirtrioError: libvirt's error, translated (see :func:`._errors.translate_error`).
    """
    libvirt = _libvirt()
    handoff = Handoff()

    def call() -> R:
        with batched_kicks(handoff):  # the event loop's wake-up rides on the result's
            return fn(*args)

    with trio.move_on_after(timeout):
        try:
            return await run_in_worker(call, limiter=limiter, abandon_on_cancel=True)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, what, uri=uri, connecting=connecting) from None
        finally:
            take_handoff(handoff)
    raise VirtrioTimeoutError(f"libvirt {uri}: {what}: no answer within {timeout:g} s")
