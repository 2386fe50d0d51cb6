"""The store's one interface on both implementations: SQLite (a file in the data dir, WAL)
and PostgreSQL (Debian's, started by the fixture)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.postgres import PostgresServer
from virtrio.engine.server import MIGRATIONS, open_store
from virtrio.engine.server._store import KeyRecord, SessionRecord
from virtrio.errors import ConfigError


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'store.db'}"
    # a fresh database per test on the session's cluster (tests/peers/postgres.py; a
    # parameter here so it starts before the leak check's snapshot)
    return postgres_server.create_database()


def _session(n: int, *, state: str = "running", backend: str = "qemu") -> SessionRecord:
    return SessionRecord(
        id=f"s-{n:04d}",
        owner="k1" if n % 2 else "k2",
        backend=backend,
        board={"name": "pc"},
        resources={"timeout_s": n},
        state=state,
        created_at=1000.0 + n,
        updated_at=1000.0 + n,
        server="a",
    )


async def test_migrations_apply_once_and_record_the_version(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        assert await store.schema_version() == len(MIGRATIONS)
        assert await store.migrate() == len(MIGRATIONS)  # a second run applies nothing
        assert await store.schema_version() == len(MIGRATIONS)
    finally:
        store.close()
    again = await open_store(store_url)  # a restart finds the schema in place
    again.close()


async def test_sessions_page_filter_sort_and_state(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        for n in range(7):
            await store.add_session(_session(n, backend="renode" if n == 3 else "qemu"))
        seen, cursor = [], None
        while True:
            page = await store.list_sessions(limit=3, cursor=cursor, sort="-created_at")
            seen += [s.id for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == [f"s-{n:04d}" for n in reversed(range(7))]
        only = await store.list_sessions(backend="renode")
        assert [s.id for s in only.items] == ["s-0003"]
        mine = await store.list_sessions(owner="k1", sort="id")
        assert [s.id for s in mine.items] == ["s-0001", "s-0003", "s-0005"]
        await store.set_state("s-0002", "stopped", 2000.0, "bye")
        got = await store.get_session("s-0002")
        assert got is not None
        assert (got.state, got.detail, got.resources) == (
            "stopped",
            "bye",
            {"timeout_s": 2},
        )
        assert await store.mark_server_sessions("a", ["running"], "lost", 3000.0) == 6
        assert [s.id for s in (await store.list_sessions(state="stopped")).items] == ["s-0002"]
        await store.delete_session("s-0002")
        assert await store.get_session("s-0002") is None
        with pytest.raises(ConfigError, match="sort="):
            await store.list_sessions(sort="owner; DROP TABLE sessions")
        with pytest.raises(ConfigError, match="cursor"):
            await store.list_sessions(cursor="zz")
    finally:
        store.close()


async def test_keys_boards_and_audit(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        await store.add_key(KeyRecord("k1", "ci", "developer", "$argon2id$x", 1.0))
        assert (await store.get_key("k1")) == KeyRecord("k1", "ci", "developer", "$argon2id$x", 1.0)
        assert await store.revoke_key("k1")
        assert not await store.revoke_key("nope")
        key = await store.get_key("k1")
        assert key is not None
        assert key.revoked
        assert await store.put_board("b", {"system_id": "x"}, 1.0)
        assert not await store.put_board("b", {"system_id": "y"}, 2.0)
        assert await store.list_boards() == {"b": {"system_id": "x"}}
        for n in range(5):
            await store.audit(float(n), "k1", "POST /api/v1/sessions", f"/r/{n}", 201)
        page = await store.list_audit(limit=2)
        assert [e.resource for e in page.items] == ["/r/4", "/r/3"]
        assert page.next_cursor
        rest = await store.list_audit(limit=10, cursor=page.next_cursor)
        assert [e.resource for e in rest.items] == ["/r/2", "/r/1", "/r/0"]
        assert rest.next_cursor is None
    finally:
        store.close()


async def test_a_bad_url_names_the_forms(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite:PATH or postgresql://"):
        await open_store("mysql://x")


def test_sqlite_store_is_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    import trio

    async def main() -> None:
        store = await open_store(f"sqlite:{tmp_path / 'w.db'}")
        store.close()

    trio.run(main)
    mode = sqlite3.connect(tmp_path / "w.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
