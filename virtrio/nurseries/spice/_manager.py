"""Spice sessions across VMs: each kept up by a Supervisor (main's loss brings all back)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from virtrio.channels.spice import SpiceSession, open_spice_session
from virtrio.errors import ConfigError
from virtrio.primitives import Backoff, Supervisor, collapse_groups

__all__ = ["SpiceManager", "open_spice_manager"]


class SpiceManager:
    """Named supervised Spice sessions; :meth:`add`, :meth:`get`, :meth:`remove`."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._sessions: dict[str, tuple[Supervisor[SpiceSession], trio.CancelScope]] = {}

    def add(
        self,
        name: str,
        address: str,
        *,
        password: str = "",
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        call_timeout: float = 10.0,
        backoff: Backoff | None = None,
    ) -> Supervisor[SpiceSession]:
        """Start keeping a session to ``address`` under ``name``."""
        if name in self._sessions:
            raise ConfigError(f"a Spice session named {name!r} already exists")
        sup: Supervisor[SpiceSession] = Supervisor(
            f"spice {name}",
            lambda: open_spice_session(
                address,
                password=password,
                ssl_context=ssl_context,
                connect_timeout=connect_timeout,
                call_timeout=call_timeout,
            ),
            backoff=backoff or Backoff(initial=0.2, maximum=10.0),
        )
        scope = trio.CancelScope()

        async def run() -> None:
            with scope:
                await sup.run()

        self._sessions[name] = (sup, scope)
        self._nursery.start_soon(run)
        return sup

    async def get(self, name: str, *, timeout: float = 10.0) -> SpiceSession:
        """The connected session ``name``, waiting through a reconnect up to ``timeout``."""
        if name not in self._sessions:
            raise ConfigError(f"no Spice session named {name!r}")
        return await self._sessions[name][0].wait_connected(timeout=timeout)

    def remove(self, name: str) -> None:
        """Stop and close session ``name``."""
        entry = self._sessions.pop(name, None)
        if entry is None:
            raise ConfigError(f"no Spice session named {name!r}")
        entry[1].cancel()


@asynccontextmanager
async def open_spice_manager() -> AsyncIterator[SpiceManager]:
    """A manager whose sessions all close on exit."""
    with collapse_groups():
        async with trio.open_nursery() as nursery:
            yield SpiceManager(nursery)
            nursery.cancel_scope.cancel()
