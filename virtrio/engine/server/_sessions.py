"""The sessions a server runs: each one's backend instance lives in a task of the manager's
nursery (the server's), so no emulator outlives the server; long operations are tasks.

Graceful shutdown stops every running session cleanly (its emulator quits and is reaped) and
records it as ``stopped``; nothing is re-adopted on restart, since an emulator is a child of the
server that ran it. Sessions a previous run of this server left ``running`` (it died without
shutting down) are marked ``lost`` when it starts again.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from virtrio.engine.backends import (
    CONSOLE_HISTORY,
    Backend,
    BackendInstance,
    Breakpoint,
    NodeConfig,
    QemuBackend,
    QemuInstance,
    ResourceLimitExceededError,
    ResourceLimits,
    load_backend,
)
from virtrio.primitives import Fanout

from ._resources import ResourceCaps, limit_failure, limits_for
from ._store import SessionRecord, Store

__all__ = ["LiveSession", "SessionLimitError", "SessionManager", "Task"]

#: states a session has while an instance of it exists in this server
LIVE_STATES = ("creating", "running")


class SessionLimitError(Exception):
    """A key asked for a session beyond its limit of live sessions on this server."""

    def __init__(self, limit: int, running: int) -> None:
        super().__init__(
            f"this key already has {running} live sessions on this server (the limit is "
            f"{limit}: delete one, or start the server with a higher --max-sessions-per-key)"
        )
        self.limit = limit
        self.running = running


@attrs.define(eq=False)
class Task:
    """A long operation (snapshot, coverage, trace): ``pending`` → ``running`` →
    ``succeeded`` (with ``result``) or ``failed`` (with ``error``)."""

    id: str
    session_id: str
    kind: str
    owner: str
    state: str = "pending"
    result: Any = None
    error: dict[str, Any] | None = None
    created_at: float = attrs.field(factory=time.time)
    finished_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The task as the API shows it."""
        return {
            "id": self.id,
            "session_id": self.session_id,
            "kind": self.kind,
            "state": self.state,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@attrs.define(eq=False)
class LiveSession:
    """A session's instance and what the API keeps beside it."""

    record: SessionRecord
    instance: BackendInstance
    stop: trio.Event = attrs.field(factory=trio.Event)
    gone: trio.Event = attrs.field(factory=trio.Event)
    events: Fanout[dict[str, Any]] = attrs.field(factory=lambda: Fanout(max_queue=256))
    breakpoints: dict[str, Breakpoint] = attrs.field(factory=dict)
    snapshots: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    programs: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    ids: int = 0

    def next_id(self, prefix: str) -> str:
        """A new id for a breakpoint, snapshot... of this session."""
        self.ids += 1
        return f"{prefix}{self.ids}"

    def publish(self, kind: str, **fields: Any) -> None:
        """Send an event to every ``/events`` viewer."""
        self.events.publish(
            {"type": kind, "session_id": self.record.id, "at": time.time(), **fields}
        )


class SessionManager:
    """Creates, finds and destroys the sessions of one server; runs their tasks."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        nursery: trio.Nursery,
        *,
        server_id: str,
        backend_factory: Callable[..., Backend] = load_backend,
        on_change: Callable[[str, str], None] = lambda _sid, _state: None,
        max_sessions_per_owner: int = 0,
        caps: ResourceCaps | None = None,
        console_history: int = CONSOLE_HISTORY,
    ) -> None:
        #: console bytes each session keeps in memory (and sends a viewer on connect)
        self.console_history = console_history
        self.max_sessions_per_owner = max_sessions_per_owner
        #: the server's caps on each session's resources
        self.caps = caps or ResourceCaps()
        self.store = store
        self.data_dir = data_dir
        self.server_id = server_id
        self._nursery = nursery
        self._factory = backend_factory
        self._backends: dict[tuple[str, bool], Backend] = {}
        self.live: dict[str, LiveSession] = {}
        self.tasks: dict[str, Task] = {}
        self._on_change = on_change

    def backend(self, name: str, *, trace: bool = False) -> Backend:
        """The backend of this name (loaded once; ``trace``: with coverage and trace on).

        Raises:
            ConfigError: no backend has this name.
        """
        if (name, trace) not in self._backends:
            self._backends[name, trace] = self._factory(name, **({"trace": True} if trace else {}))
        return self._backends[name, trace]

    async def hold_lease(
        self,
        url: str,
        lease: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep this server's lease (owner, expiry, heartbeat every third of ``lease``) and
        mark lost the sessions of servers whose lease has run out."""
        await self.store.heartbeat(self.server_id, url, time.time() + lease)
        await self.store.expire_servers(time.time(), LIVE_STATES)
        task_status.started()
        while True:
            await trio.sleep(lease / 3)  # a timer: the lease's own period
            await self.store.heartbeat(self.server_id, url, time.time() + lease)
            await self.store.expire_servers(time.time(), LIVE_STATES)

    async def adopt_leftovers(self) -> int:
        """Mark ``lost`` the sessions a previous run of this server left live."""
        return await self.store.mark_server_sessions(
            self.server_id, LIVE_STATES, "lost", time.time()
        )

    async def create(
        self,
        *,
        owner: str,
        backend_name: str,
        node: NodeConfig,
        board: dict[str, Any],
        resources: dict[str, Any],
    ) -> LiveSession:
        """Create a session and its instance (powered off until a program starts).

        Raises:
            SessionLimitError: ``owner`` already has ``max_sessions_per_owner`` live sessions.
            ResourceRequestError: the backend (or machine) cannot enforce a resource asked for.
        """
        limit = self.max_sessions_per_owner
        running = sum(1 for live in self.live.values() if live.record.owner == owner)
        if limit and running >= limit:
            raise SessionLimitError(limit, running)
        backend = self.backend(backend_name, trace=bool(resources.get("trace")))
        backend.check_node(node)
        enforces = isinstance(backend, QemuBackend)
        limits = limits_for(backend_name, resources, enforces=enforces)
        now = time.time()
        record = SessionRecord(
            id=f"s-{secrets.token_hex(6)}",
            owner=owner,
            backend=backend_name,
            board=board,
            resources=resources,
            state="creating",
            created_at=now,
            updated_at=now,
            server=self.server_id,
        )
        await self.store.add_session(record)
        try:
            live: LiveSession = await self._nursery.start(
                self._run, record, backend, node, limits if enforces else None
            )
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self._set_state(record.id, "failed", str(exc))
            raise
        await self._set_state(record.id, "running")
        return live

    async def _run(
        self,
        record: SessionRecord,
        backend: Backend,
        node: NodeConfig,
        limits: ResourceLimits | None,
        *,
        task_status: trio.TaskStatus[LiveSession] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # each session has its own work dir (sockets, programs, logs, snapshots)
        workdir = self.data_dir / "sessions" / record.id
        timeout = float(record.resources.get("timeout_s") or 0) or float("inf")
        final, detail, failure = "stopped", "", None
        live: LiveSession | None = None
        opened = (
            backend.open_instance(node, instance_id=record.id, workdir=workdir, limits=limits)
            if isinstance(backend, QemuBackend) and limits is not None
            else backend.open_instance(node, instance_id=record.id, workdir=workdir)
        )
        try:
            async with opened as inst:
                console = getattr(inst, "console", None)
                if console is not None:
                    console.history_limit = self.console_history
                live = LiveSession(record, inst)
                self.live[record.id] = live
                task_status.started(live)
                with trio.move_on_after(timeout) as scope:
                    error = await _wait_end(live)
                if scope.cancelled_caught:
                    final = "expired"
                elif error is not None:  # never shown as running: failed, and why
                    final, detail, failure = "failed", str(error), limit_failure(error)
        finally:
            self.live.pop(record.id, None)
            if live is not None:
                live.publish("state", state=final, failure=failure)
                live.events.close()
                live.gone.set()
                with trio.CancelScope(shield=True):
                    await self._set_state(record.id, final, detail, failure)

    async def _set_state(
        self,
        session_id: str,
        state: str,
        detail: str = "",
        failure: dict[str, Any] | None = None,
    ) -> None:
        await self.store.set_state(session_id, state, time.time(), detail, failure)
        self._on_change(session_id, state)
        live = self.live.get(session_id)
        if live is not None:
            live.record = attrs.evolve(live.record, state=state, updated_at=time.time())
            live.publish("state", state=state)

    async def destroy(self, session_id: str) -> None:
        """Stop a live session's instance and wait until its emulator is reaped."""
        live = self.live.get(session_id)
        if live is not None:
            live.stop.set()
            await live.gone.wait()

    def start_task(
        self, live: LiveSession, kind: str, owner: str, job: Callable[[], Awaitable[Any]]
    ) -> Task:
        """Run ``job`` as a task of the server; returns it at once (``pending``)."""
        task = Task(f"t-{secrets.token_hex(6)}", live.record.id, kind, owner)
        self.tasks[task.id] = task

        async def run() -> None:
            task.state = "running"
            live.publish("task", task=task.to_json())
            try:
                task.result = await job()
                task.state = "succeeded"
            except Exception as exc:  # a task's failure is its result, never the server's
                task.state = "failed"
                task.error = {"error": str(exc), "code": type(exc).__name__}
            task.finished_at = time.time()
            live.publish("task", task=task.to_json())

        self._nursery.start_soon(run)
        return task


async def _wait_end(live: LiveSession) -> ResourceLimitExceededError | None:
    """Wait until the session is asked to stop (None) or a resource limit kills its
    emulator (the error)."""
    inst = live.instance
    if not isinstance(inst, QemuInstance) or inst.limits is None:
        await live.stop.wait()
        return None
    found: list[ResourceLimitExceededError] = []
    async with trio.open_nursery() as nursery:

        async def stopped() -> None:
            await live.stop.wait()
            nursery.cancel_scope.cancel()

        async def killed() -> None:
            found.append(await inst.wait_limit_exceeded())
            nursery.cancel_scope.cancel()

        nursery.start_soon(stopped)
        nursery.start_soon(killed)
    return found[0] if found else None
