"""An engine in a Trio loop of its own (a background thread), and proxies that reach into it.

pytest-trio runs every test in a new ``trio.run``, so nothing Trio-owned can outlive one test:
a session-scoped engine cannot live in a test's loop. :class:`EngineThread` runs the engine in
one long-lived loop in a background thread; :class:`Remote` proxies its objects into any other
thread or loop. An attribute that is plain data (str, numbers, bytes, attrs values, containers
of them) comes back as the value; anything else comes back as another proxy. Calling a proxied
coroutine function gives an awaitable that runs it in the engine's loop (the caller's loop is
not blocked: it waits in a worker thread); calling a plain function runs it there at once.
"""

from __future__ import annotations

import functools
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import outcome
import trio

__all__ = ["EngineThread", "Remote"]

_PLAIN = (str, int, float, bool, bytes, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, _PLAIN) or attrs.has(type(value)):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(_is_plain(k) and _is_plain(v) for k, v in value.items())
    return False


class EngineThread:
    """``open_engine(fleet)`` running in a background thread until :meth:`close`."""

    def __init__(self, fleet: Any, *, connect_timeout: float = 240.0) -> None:
        self.fleet = fleet
        self.connect_timeout = connect_timeout
        self.engine: Any = None
        self.token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="virtrio-engine", daemon=True)
        #: The last call made through a proxy, per VM (``demo1 qga.shell('x')``), for reports.
        self.last_call: dict[str, str] = {}

    def start(self) -> EngineThread:
        """Start the loop and wait until every VM's channels are connected.

        Raises:
            VirtrioError: the engine did not come up (its error).
        """
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from virtrio.engine import open_engine
        from virtrio.engine.scenario._run import _connect

        self.token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with open_engine(self.fleet) as engine:
            async with trio.open_nursery() as nursery:
                for vm in engine.vms():
                    nursery.start_soon(_connect, vm, self.connect_timeout)
            self.engine = engine
            self._ready.set()
            await self._stop.wait()

    def call_sync(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` in the engine's loop (from any other thread) and return it."""
        assert self.token is not None
        results: queue.Queue[outcome.Outcome[Any]] = queue.Queue(maxsize=1)
        self.token.run_sync_soon(lambda: results.put(outcome.capture(function)))
        return results.get().unwrap()

    async def call_async(self, function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``function(*args)`` in the engine's loop from another Trio loop."""
        run = functools.partial(trio.from_thread.run, function, *args, trio_token=self.token)
        return await trio.to_thread.run_sync(run)

    def close(self) -> None:
        """Stop the engine (its QEMUs are stopped and reaped) and the thread."""
        if self.token is not None and self._stop is not None and self._thread.is_alive():
            stop = self._stop
            self.token.run_sync_soon(stop.set)
        if self._thread.is_alive():
            self._thread.join()


class Remote:
    """A proxy of an object that lives in an :class:`EngineThread`'s loop."""

    def __init__(self, thread: EngineThread, resolve: Callable[[], Any], path: str) -> None:
        self._thread = thread
        self._resolve = resolve
        self._path = path

    def __repr__(self) -> str:
        return f"<remote {self._path}>"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        resolve = self._resolve

        def attribute() -> Any:
            return getattr(resolve(), name)

        value = self._thread.call_sync(attribute)
        if _is_plain(value):
            return value
        return Remote(self._thread, attribute, f"{self._path}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        resolve = self._resolve
        vm, _, rest = self._path.partition(".")
        shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        self._thread.last_call[vm] = f"{vm} {rest}({shown})"
        target = self._thread.call_sync(resolve)
        if inspect.iscoroutinefunction(target):

            async def call() -> Any:
                return await target(*args, **kwargs)

            return self._await(call)
        value = self._thread.call_sync(lambda: target(*args, **kwargs))
        if _is_plain(value):
            return value
        return Remote(self._thread, lambda: value, f"{self._path}()")

    async def _await(self, call: Callable[[], Awaitable[Any]]) -> Any:
        value = await self._thread.call_async(call)
        if _is_plain(value):
            return value
        return Remote(self._thread, lambda: value, f"{self._path}()")
