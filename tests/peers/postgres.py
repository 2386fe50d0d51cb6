"""A real PostgreSQL server for the tests: Debian's package, run as ``nobody`` in a temp dir.

``initdb`` makes a throw-away cluster under a fresh ``/tmp/vtpg-*`` directory (mode 0700, owned
by ``nobody``); ``postgres`` runs in the foreground as a child of the test process, listening
only on a Unix socket in that directory (``listen_addresses=''``: no TCP at all), with
durability switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``) because the
cluster dies with the session. Readiness comes from the server's own log line, not polling.
Teardown is ``pg_ctl stop -m immediate``, then the postmaster is reaped (PID 1 here does not
reap orphans) and the directory removed::

    def test_store(postgres_url: str) -> None:      # a fresh, empty database per test
        with psycopg.connect(postgres_url) as conn: ...

    postgres_server.url("other")                    # the session's server, any database
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from . import INSTALL_HINT, dies_with_tests, stop_process

__all__ = ["PostgresServer", "find_postgres_bin"]

USER = "nobody"
GROUP = "nogroup"
#: the postmaster's log line once it accepts connections
READY = "database system is ready to accept connections"
START_TIMEOUT = 60.0


def find_postgres_bin() -> Path:
    """The directory of Debian's PostgreSQL server programs (the newest installed major); a
    missing package fails loudly with the apt command."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not candidates:
        pytest.fail(f"PostgreSQL not found: apt-get install postgresql ({INSTALL_HINT})")
    return Path(candidates[-1]).parent


@attrs.define
class PostgresServer:
    """A running postmaster on a Unix socket in :attr:`root`."""

    root: Path
    bin: Path
    process: subprocess.Popen[bytes] | None = None
    _counter: Iterator[int] = attrs.field(factory=itertools.count)

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's socket (``.s.PGSQL.5432``)."""
        return self.root

    def url(self, dbname: str = "postgres") -> str:
        """A libpq/psycopg 3 connection URL for ``dbname`` over the Unix socket."""
        return f"postgresql:///{dbname}?host={self.socket_dir}&user={USER}"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            argv,
            user=USER,
            group=GROUP,
            extra_groups=[],
            cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"{argv[0]} failed ({result.returncode}):\n{result.stderr.decode()}")

    def start(self) -> None:
        """initdb, then the postmaster; return once it accepts connections."""
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        )
        log = (self.root / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            dies_with_tests(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    f"unix_socket_directories={self.socket_dir}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=100",
                    "-c",
                    "logging_collector=off",
                ]
            ),
            user=USER,
            group=GROUP,
            extra_groups=[],
            cwd=self.root,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.PIPE,
        )
        log.close()
        ready = threading.Event()
        # the postmaster logs to its stderr for its whole life: a thread drains it into the log
        # file (a full pipe would block the server) and signals the ready line or EOF
        threading.Thread(
            target=_drain, args=(self.process, self.root / "postgres.log", ready), daemon=True
        ).start()
        if not ready.wait(START_TIMEOUT) or self.process.poll() is not None:
            self.stop()
            text = (self.root / "postgres.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"postgres did not start within {START_TIMEOUT} s:\n{text}")

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``, then reap the postmaster (killing it if it lingers)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        if proc.poll() is None:
            subprocess.run(
                [str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate"],
                user=USER,
                group=GROUP,
                extra_groups=[],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        stop_process(proc, grace=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    @classmethod
    def create(cls) -> PostgresServer:
        """A server (not started) with its directory made under a new temp dir."""
        bin_dir = find_postgres_bin()
        root = Path(tempfile.mkdtemp(prefix="vtpg-", dir="/tmp"))
        root.chmod(0o700)
        shutil.chown(root, USER, GROUP)
        return cls(root, bin_dir)


def _drain(proc: subprocess.Popen[bytes], log_path: Path, ready: threading.Event) -> None:
    assert proc.stderr is not None
    with log_path.open("ab") as log:
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if READY.encode() in line:
                ready.set()
    ready.set()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session (see the module docstring)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail(f"psycopg is not installed ({INSTALL_HINT})")
    server = PostgresServer.create()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The psycopg 3 URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()
