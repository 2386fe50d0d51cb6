"""The PostgreSQL fixture itself: a real server on a Unix socket only, fresh databases."""

from __future__ import annotations

import shutil

import psycopg

from tests.peers.postgres import PostgresServer


def test_connects_and_round_trips(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO t (name) VALUES (%s), (%s)", ("a", "b"))
        rows = conn.execute("SELECT id, name FROM t ORDER BY id").fetchall()
        assert rows == [(1, "a"), (2, "b")]
        (version,) = conn.execute("SHOW server_version_num").fetchone() or (None,)
        assert version is not None
        assert int(version) >= 150000


def test_each_test_gets_an_empty_database(postgres_url: str) -> None:
    # the table of the test above does not exist here
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)


def test_listens_on_unix_socket_only(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
        assert conn.execute("SELECT current_user").fetchone() == ("nobody",)
    assert (postgres_server.socket_dir / ".s.PGSQL.5432").is_socket()
    assert postgres_server.process is not None
    assert postgres_server.process.poll() is None


def test_stop_reaps_the_postmaster() -> None:
    server = PostgresServer.create()
    try:
        server.start()
        proc = server.process
        assert proc is not None
        server.stop()
        assert proc.returncode is not None
        assert server.process is None
        assert not (server.socket_dir / ".s.PGSQL.5432").exists()
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
