"""An engine in a Trio loop of its own (a background thread), and proxies that reach into it.

pytest-trio runs every test in a new ``trio.run``, so nothing Trio-owned can outlive one test:
a session-scoped engine cannot live in a test's loop. :class:`EngineThread` runs the engine in
one long-lived loop in a background thread; :class:`Remote` proxies its objects into any other
thread or loop. An attribute that is plain data (str, numbers, bytes, attrs values, containers
of them) comes back as the value; anything else comes back as another proxy. Calling a proxied
coroutine function gives an awaitable that runs it in the engine's loop (the caller's loop is
not blocked: it waits in a worker thread); calling a plain function runs it there at once.

A proxy is also a context manager and an iterator where its object is one: ``with
vm.events() as sub``, ``async with stream``, ``async for event in sub``. An ``async with`` is
held by one task of the engine's loop from ``__aenter__`` to ``__aexit__`` (a context manager
that opens a nursery or a cancel scope needs both in the same task); the exception of the
block is thrown into it there, so it may suppress it.
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
        self._holders: trio.Nursery | None = None
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
            async with trio.open_nursery() as holders:
                self._holders = holders
                self._ready.set()
                await self._stop.wait()
                holders.cancel_scope.cancel()  # an `async with` a test never left

    def start_holder(self, held: _Held) -> None:
        """Start ``held``'s task in the engine's loop (from another thread)."""
        holders = self._holders
        assert self.token is not None
        assert holders is not None
        self.token.run_sync_soon(lambda: holders.start_soon(held.run))

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


class _Held:
    """An async context manager held open by one task of the engine's loop."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self._entered = trio.Event()
        self._enter: outcome.Outcome[Any] | None = None
        self._exit_info: tuple[Any, Any, Any] = (None, None, None)
        self._leave = trio.Event()
        self._left = trio.Event()
        self._exit: outcome.Outcome[Any] | None = None

    async def run(self) -> None:
        self._enter = await outcome.acapture(self.manager.__aenter__)
        self._entered.set()
        if isinstance(self._enter, outcome.Error):
            if isinstance(self._enter.error, trio.Cancelled):
                raise self._enter.error
            return
        try:
            await self._leave.wait()
        except BaseException as exc:  # the engine stops while a test is inside the block
            with trio.CancelScope(shield=True):
                await self.manager.__aexit__(type(exc), exc, exc.__traceback__)
            self._exit = outcome.Error(exc)  # a leave() waiting now gets the engine's end
            self._left.set()
            raise
        self._exit = await outcome.acapture(self.manager.__aexit__, *self._exit_info)
        self._left.set()

    async def entered(self) -> Any:
        await self._entered.wait()
        assert self._enter is not None
        return self._enter.unwrap()

    async def leave(self, exc_info: tuple[Any, Any, Any]) -> Any:
        self._exit_info = exc_info
        self._leave.set()
        await self._left.wait()
        assert self._exit is not None
        return self._exit.unwrap()


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

    async def _await(self, call: Callable[[], Awaitable[Any]], suffix: str = "()") -> Any:
        value = await self._thread.call_async(call)
        return self._wrap(value, suffix)

    def _wrap(self, value: Any, suffix: str) -> Any:
        if _is_plain(value):
            return value
        return Remote(self._thread, lambda: value, f"{self._path}{suffix}")

    def _special(self, name: str) -> Any:
        """The object's ``name`` method (looked up on its type, as Python does), run there."""
        resolve = self._resolve

        def method() -> Any:
            target = resolve()
            bound = getattr(type(target), name, None)
            if bound is None:
                raise TypeError(f"{self._path} ({type(target).__name__}) has no {name}")
            return bound.__get__(target)

        return self._thread.call_sync(method)

    # -- with / async with / for / async for across the loop boundary -----------------------

    def __enter__(self) -> Any:
        enter = self._special("__enter__")
        return self._wrap(self._thread.call_sync(enter), "")

    def __exit__(self, *exc_info: Any) -> Any:
        leave = self._special("__exit__")
        return self._thread.call_sync(lambda: leave(*exc_info))

    async def __aenter__(self) -> Any:
        self._special("__aenter__")  # fails here if it is not an async context manager
        held = _Held(self._thread.call_sync(self._resolve))
        self._thread.start_holder(held)
        self._held = held
        return self._wrap(await self._thread.call_async(held.entered), "")

    async def __aexit__(self, *exc_info: Any) -> Any:
        held: _Held = self.__dict__.pop("_held")
        return await self._thread.call_async(held.leave, exc_info)

    def __iter__(self) -> Any:
        iterator = self._thread.call_sync(lambda: iter(self._resolve()))
        return Remote(self._thread, lambda: iterator, f"iter({self._path})")

    def __next__(self) -> Any:
        step = self._special("__next__")
        return self._wrap(self._thread.call_sync(step), "")

    def __aiter__(self) -> Any:
        aiter_ = self._special("__aiter__")
        iterator = self._thread.call_sync(aiter_)
        return Remote(self._thread, lambda: iterator, f"aiter({self._path})")

    async def __anext__(self) -> Any:
        step = self._special("__anext__")

        async def advance() -> Any:
            return await step()

        return await self._await(advance, "")
