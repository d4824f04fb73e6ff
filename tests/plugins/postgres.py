"""Fixture plugin: a private database per test on the machine's PostgreSQL (127.0.0.1:5432).

``pg_server`` (session) checks the server answers (``make test`` starts it with
``scripts/ensure-postgres.sh``); when PostgreSQL is not installed at all the tests that
need it are skipped with that reason, and when it is installed but not answering they fail
with the command that starts it. ``pg_database`` creates a database with a unique name
for one test and drops it (``WITH (FORCE)``) afterwards; ``pg_migrated`` also applies the
collector's migrations. Other helpers' tests use the same server: nothing here restarts it
or touches another database. Override the server with ``EDGE_TEST_PG`` (libpq string).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_DSN = os.environ.get("EDGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")


def postgres_installed() -> bool:
    """Whether a PostgreSQL server is installed on this machine (Debian layout or on PATH)."""
    return Path("/usr/lib/postgresql").is_dir() or shutil.which("postgres") is not None


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The server's admin DSN (database ``postgres``), once it answers."""
    psycopg = pytest.importorskip("psycopg", reason="the collector extra is not installed")
    dsn = f"{SERVER_DSN} dbname=postgres"
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        if not postgres_installed():
            pytest.skip(f"PostgreSQL is not installed (needed for the collector tests): {exc}")
        pytest.fail(
            f"PostgreSQL is installed but not answering at {SERVER_DSN}: {exc}. "
            "Start it with `bash scripts/ensure-postgres.sh` (make test does).",
            pytrace=False,
        )
    return dsn


@pytest.fixture
def pg_database(pg_server: str) -> Iterator[str]:
    """DSN of a fresh, empty database that only this test uses (dropped afterwards)."""
    import psycopg

    name = f"edge_collect_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER_DSN} dbname={name}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_migrated(pg_database: str) -> str:
    """DSN of a fresh database with the collector's schema applied."""
    from edge_agent.collect import migrate
    from edge_agent.collect.config import DatabaseConfig

    migrate.apply(DatabaseConfig(dsn=pg_database))
    return pg_database


def _bindir() -> Path | None:
    """Directory of initdb/pg_ctl of the newest installed PostgreSQL (Debian layout)."""
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        for version in sorted(root.iterdir(), key=lambda p: p.name, reverse=True):
            if (version / "bin" / "initdb").is_file():
                return version / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free 127.0.0.1 port, safe to restart or crash.

    Used where a test must restart a real server: the machine's shared server is never
    restarted (other jobs use it). As root the cluster runs as the ``postgres`` user.
    """

    def __init__(self, bindir: Path, base: Path, port: int) -> None:
        self.bindir, self.base, self.port = bindir, base, port
        self.data = base / "data"
        self.log = base / "server.log"

    def _run(self, *args: str, timeout: float = 60) -> None:
        import subprocess

        cmd = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)

    def init(self) -> None:
        """Initdb (trust auth, no fsync: a test cluster)."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop: ``fast`` (clean), or ``immediate`` (like a crash: recovery on next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def dsn(self) -> str:
        """Admin DSN (database postgres)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private cluster for restart tests (skipped when PostgreSQL is not installed)."""
    import tempfile

    from tests.plugins.broker import free_port

    pytest.importorskip("psycopg", reason="the collector extra is not installed")
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    base = Path(tempfile.mkdtemp(prefix="edge-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server = PrivatePostgres(bindir, base, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        import contextlib
        import subprocess

        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
