"""The server's store: one interface, SQLite (the embedded default) and PostgreSQL.

Both drivers are blocking; every call runs in a worker thread under one
:class:`trio.CapacityLimiter`, since no driver's async API runs on Trio. The SQL is shared (the
``?`` placeholders become ``%s`` for psycopg) and the schema is built by numbered migrations,
recorded in ``schema_version``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from virtrio.errors import ConfigError
from virtrio.primitives import run_in_worker

__all__ = ["MIGRATIONS", "AuditEntry", "KeyRecord", "Page", "SessionRecord", "Store", "open_store"]

T = TypeVar("T")

#: The schema, one migration per version; a store applies those it has not yet.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,"
        " hash TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
        " revoked INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, backend TEXT NOT NULL,"
        " board TEXT NOT NULL, resources TEXT NOT NULL, state TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,"
        " server TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')",
        "CREATE INDEX sessions_created ON sessions (created_at)",
        "CREATE TABLE boards (name TEXT PRIMARY KEY, config TEXT NOT NULL,"
        " created_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE audit (seq {serial}, at DOUBLE PRECISION NOT NULL,"
        " actor TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL,"
        " outcome INTEGER NOT NULL)",
    ),
    (
        "CREATE TABLE servers (id TEXT PRIMARY KEY, url TEXT NOT NULL,"
        " expires_at DOUBLE PRECISION NOT NULL)",
    ),
    # why a failed session failed, as an error body (a resource limit, say); '' for none
    ("ALTER TABLE sessions ADD COLUMN failure TEXT NOT NULL DEFAULT ''",),
)


@attrs.frozen
class KeyRecord:
    """An API key as stored: its id (public), role and argon2 hash of the secret."""

    id: str
    name: str
    role: str
    hash: str
    created_at: float
    revoked: bool = False


@attrs.frozen
class SessionRecord:
    """A session's persistent state."""

    id: str
    owner: str
    backend: str
    board: dict[str, Any]
    resources: dict[str, Any]
    state: str
    created_at: float
    updated_at: float
    server: str
    detail: str = ""
    #: why it failed, ``{error, code, details}`` (None: it did not, or no reason is known)
    failure: dict[str, Any] | None = None


@attrs.frozen
class AuditEntry:
    """Who did what, on which resource, with which outcome (the HTTP status)."""

    seq: int
    at: float
    actor: str
    action: str
    resource: str
    outcome: int


@attrs.frozen
class Page:
    """One page of a listing; ``next_cursor`` is None on the last."""

    items: list[Any]
    next_cursor: str | None


_SESSION_COLUMNS = (
    "id, owner, backend, board, resources, state, created_at, updated_at, server, detail, failure"
)
_SORTS = {
    "created_at": "created_at",
    "-created_at": "created_at DESC",
    "id": "id",
    "-id": "id DESC",
}


def _session(row: Sequence[Any]) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        owner=row[1],
        backend=row[2],
        board=json.loads(row[3]),
        resources=json.loads(row[4]),
        state=row[5],
        created_at=row[6],
        updated_at=row[7],
        server=row[8],
        detail=row[9],
        failure=json.loads(row[10]) if row[10] else None,
    )


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]))


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        value = int(cursor, 16)
    except ValueError:
        raise ConfigError(f"cursor {cursor!r} is not one this server gave") from None
    if value < 0:
        raise ConfigError(f"cursor {cursor!r} is not one this server gave")
    return value


class Store:
    """The server's metadata: API keys, sessions, board templates, the audit log.

    Made by :func:`open_store`; every method is async and runs its SQL in a worker thread.
    """

    def __init__(self, url: str, *, limiter: int = 4) -> None:
        self.url = url
        self._limiter = trio.CapacityLimiter(limiter)
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self._pool: Any = None
        if url.startswith("sqlite:"):
            path = url.removeprefix("sqlite:").removeprefix("//")
            self.dialect = "sqlite"
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA busy_timeout=5000")
            # WAL makes NORMAL durable against a crash of the process; only a power loss can
            # lose the last commits (never corrupt the file)
            self._sqlite.execute("PRAGMA synchronous=NORMAL")
        elif url.startswith(("postgresql:", "postgres:")):
            from psycopg_pool import ConnectionPool  # the server extra

            self.dialect = "postgresql"
            self._pool = ConnectionPool(url, min_size=1, max_size=limiter, open=False)
        else:
            raise ConfigError(f"--db {url!r}: expected sqlite:PATH or postgresql://...")

    # --- plumbing -------------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[Any] = (), *, fetch: bool = False) -> list[Any]:
        if self._sqlite is not None:
            with self._lock:
                cursor = self._sqlite.execute(sql, tuple(params))
                return cursor.fetchall() if fetch else []
        with self._pool.connection() as conn:
            cursor = conn.execute(sql.replace("?", "%s"), tuple(params))
            return list(cursor.fetchall()) if fetch else []

    async def _call(self, fn: Callable[[], T]) -> T:
        return await run_in_worker(fn, limiter=self._limiter)

    async def _exec(self, sql: str, *params: Any) -> None:
        await self._call(lambda: self._run(sql, params))

    async def _query(self, sql: str, *params: Any) -> list[Any]:
        return await self._call(lambda: self._run(sql, params, fetch=True))

    def _migrate(self) -> int:
        if self._pool is not None:
            self._pool.open(wait=True, timeout=30)
        self._run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
        rows = self._run("SELECT MAX(version) FROM schema_version", fetch=True)
        current = rows[0][0] or 0
        for version, statements in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            serial = "INTEGER PRIMARY KEY" if self._sqlite is not None else "BIGSERIAL PRIMARY KEY"
            for statement in statements:
                self._run(statement.replace("{serial}", serial))
            self._run("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return len(MIGRATIONS)

    async def migrate(self) -> int:
        """Apply the migrations not yet applied; returns the schema version."""
        return await self._call(self._migrate)

    async def schema_version(self) -> int:
        """The version the store's schema is at."""
        rows = await self._query("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    def close(self) -> None:
        """Close the connection (or the pool)."""
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pool is not None:
            self._pool.close()

    # --- keys -----------------------------------------------------------------------------

    async def add_key(self, key: KeyRecord) -> None:
        """Store a new API key."""
        await self._exec(
            "INSERT INTO api_keys (id, name, role, hash, created_at) VALUES (?, ?, ?, ?, ?)",
            key.id,
            key.name,
            key.role,
            key.hash,
            key.created_at,
        )

    async def get_key(self, key_id: str) -> KeyRecord | None:
        """The key with this id, if any."""
        rows = await self._query(
            "SELECT id, name, role, hash, created_at, revoked FROM api_keys WHERE id = ?", key_id
        )
        return _key(rows[0]) if rows else None

    async def list_keys(self) -> list[KeyRecord]:
        """Every key (hashes included; the API never shows them)."""
        rows = await self._query(
            "SELECT id, name, role, hash, created_at, revoked FROM api_keys ORDER BY created_at"
        )
        return [_key(row) for row in rows]

    async def revoke_key(self, key_id: str) -> bool:
        """Revoke a key; False if there is none with this id."""
        if await self.get_key(key_id) is None:
            return False
        await self._exec("UPDATE api_keys SET revoked = 1 WHERE id = ?", key_id)
        return True

    # --- sessions -------------------------------------------------------------------------

    async def add_session(self, s: SessionRecord) -> None:
        """Store a new session."""
        await self._exec(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            s.id,
            s.owner,
            s.backend,
            json.dumps(s.board),
            json.dumps(s.resources),
            s.state,
            s.created_at,
            s.updated_at,
            s.server,
            s.detail,
            json.dumps(s.failure) if s.failure else "",
        )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """The session with this id, if any."""
        rows = await self._query(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", session_id
        )
        return _session(rows[0]) if rows else None

    async def set_state(
        self,
        session_id: str,
        state: str,
        at: float,
        detail: str = "",
        failure: dict[str, Any] | None = None,
    ) -> None:
        """Record a session's new state (and why it failed, if it did)."""
        await self._exec(
            "UPDATE sessions SET state = ?, updated_at = ?, detail = ?, failure = ? WHERE id = ?",
            state,
            at,
            detail,
            json.dumps(failure) if failure else "",
            session_id,
        )

    async def mark_server_sessions(
        self, server: str, states: Sequence[str], state: str, at: float
    ) -> int:
        """Move every session of ``server`` in one of ``states`` to ``state``; returns how many."""
        marks = ", ".join("?" for _ in states)
        where = f"server = ? AND state IN ({marks})"
        rows = await self._query(f"SELECT COUNT(*) FROM sessions WHERE {where}", server, *states)
        await self._exec(
            f"UPDATE sessions SET state = ?, updated_at = ? WHERE {where}",
            state,
            at,
            server,
            *states,
        )
        return int(rows[0][0])

    async def delete_session(self, session_id: str) -> None:
        """Forget a session."""
        await self._exec("DELETE FROM sessions WHERE id = ?", session_id)

    async def list_sessions(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        sort: str = "created_at",
        state: str | None = None,
        backend: str | None = None,
        owner: str | None = None,
    ) -> Page:
        """A page of sessions, filtered and sorted.

        Raises:
            ConfigError: an unknown sort key or a cursor this store did not give.
        """
        if sort not in _SORTS:
            raise ConfigError(f"sort={sort!r}: expected one of {sorted(_SORTS)}")
        offset = _offset(cursor)
        where, params = [], []
        for column, value in (("state", state), ("backend", backend), ("owner", owner)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._query(
            f"SELECT {_SESSION_COLUMNS} FROM sessions {clause} ORDER BY {_SORTS[sort]}, id"
            " LIMIT ? OFFSET ?",
            *params,
            limit + 1,
            offset,
        )
        items = [_session(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(items, format(offset + limit, "x") if more else None)

    # --- servers and their leases --------------------------------------------------------

    async def heartbeat(self, server: str, url: str, expires_at: float) -> None:
        """Renew ``server``'s lease (its sessions are its own until ``expires_at``)."""
        await self._exec(
            "INSERT INTO servers (id, url, expires_at) VALUES (?, ?, ?) ON CONFLICT (id)"
            " DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at",
            server,
            url,
            expires_at,
        )

    async def server_url(self, server: str, now: float) -> str | None:
        """The URL a live server serves on (None: unknown, or its lease ended before ``now``)."""
        rows = await self._query("SELECT url, expires_at FROM servers WHERE id = ?", server)
        return str(rows[0][0]) if rows and rows[0][1] >= now else None

    async def expire_servers(self, now: float, states: Sequence[str]) -> list[str]:
        """Forget every server whose lease ended before ``now`` and mark its sessions in
        ``states`` lost; returns their ids."""
        rows = await self._query("SELECT id FROM servers WHERE expires_at < ?", now)
        dead = [str(row[0]) for row in rows]
        for server in dead:
            await self.mark_server_sessions(server, states, "lost", now)
            await self._exec("DELETE FROM servers WHERE id = ? AND expires_at < ?", server, now)
        return dead

    # --- boards ---------------------------------------------------------------------------

    async def put_board(self, name: str, config: dict[str, Any], at: float) -> bool:
        """Store a board template; False if one has this name already."""
        if await self.get_board(name) is not None:
            return False
        await self._exec(
            "INSERT INTO boards (name, config, created_at) VALUES (?, ?, ?)",
            name,
            json.dumps(config),
            at,
        )
        return True

    async def get_board(self, name: str) -> dict[str, Any] | None:
        """A stored board template by name."""
        rows = await self._query("SELECT config FROM boards WHERE name = ?", name)
        return json.loads(rows[0][0]) if rows else None

    async def list_boards(self) -> dict[str, dict[str, Any]]:
        """Every stored board template by name."""
        rows = await self._query("SELECT name, config FROM boards ORDER BY name")
        return {row[0]: json.loads(row[1]) for row in rows}

    # --- audit ----------------------------------------------------------------------------

    async def audit(self, at: float, actor: str, action: str, resource: str, outcome: int) -> None:
        """Append to the audit log."""
        await self._exec(
            "INSERT INTO audit (at, actor, action, resource, outcome) VALUES (?, ?, ?, ?, ?)",
            at,
            actor,
            action,
            resource,
            outcome,
        )

    async def list_audit(self, *, limit: int = 50, cursor: str | None = None) -> Page:
        """A page of the audit log, newest first."""
        offset = _offset(cursor)
        rows = await self._query(
            "SELECT seq, at, actor, action, resource, outcome FROM audit ORDER BY seq DESC"
            " LIMIT ? OFFSET ?",
            limit + 1,
            offset,
        )
        items = [AuditEntry(*row) for row in rows[:limit]]
        return Page(items, format(offset + limit, "x") if len(rows) > limit else None)


async def open_store(url: str, *, limiter: int = 4) -> Store:
    """A migrated store for ``sqlite:PATH`` or ``postgresql://...``."""
    store = Store(url, limiter=limiter)
    try:
        await store.migrate()
    except BaseException:
        store.close()
        raise
    return store
