"""Schema migrations with yoyo-migrations: plain SQL files shipped in the package.

Why yoyo: migrations are plain SQL (``migrations/NNNN.name.sql`` with a ``.rollback.sql``
beside each), readable by a DBA and runnable by hand; yoyo records what was applied
(``_yoyo_migration``), applies each migration in its own transaction (PostgreSQL has
transactional DDL, so a failed migration leaves nothing behind) and supports psycopg 3.
Alembic would bring SQLAlchemy and an ORM-shaped workflow for a schema this program writes
with hand-written SQL anyway.

Concurrency: several collector instances may start at once (``migrate = "auto"``). yoyo's
own lock is a row in a table, which a SIGKILLed migrator leaves behind; so the migration
runs under a PostgreSQL session advisory lock (released by the server whatever happens to
the process), and a yoyo lock row found while holding it is stale and removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.conninfo import conninfo_to_dict
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI

from edge_agent.collect import db
from edge_agent.collect.config import DatabaseConfig

SOURCE = "package:edge_agent.collect:migrations"
MIGRATION_TABLE = "_yoyo_migration"
# pg_advisory_lock key: "edgecoll" as an int8, so it cannot collide with another program's.
ADVISORY_KEY = int.from_bytes(b"edgecoll", "big") - 2**63


@dataclass(frozen=True, slots=True)
class MigrationState:
    """Which migrations are applied and which are pending."""

    applied: tuple[str, ...]
    pending: tuple[str, ...]


def _backend(cfg: DatabaseConfig) -> PostgresqlPsycopgBackend:
    params = conninfo_to_dict(db.conninfo(cfg, "migrate"))
    uri = DatabaseURI(
        "postgresql+psycopg",
        params.pop("user", None),
        params.pop("password", None),
        params.pop("host", None),
        params.pop("port", None),
        params.pop("dbname", None),
        {k: str(v) for k, v in params.items()},
    )
    return PostgresqlPsycopgBackend(uri, MIGRATION_TABLE)


def state(cfg: DatabaseConfig) -> MigrationState:
    """Applied and pending migration ids (read-only: nothing is created)."""
    ids = [m.id for m in read_migrations(SOURCE)]
    with db.connect(cfg, "status", autocommit=True) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (MIGRATION_TABLE,)).fetchone()
        applied: set[str] = set()
        if row is not None and row[0]:
            query = f"SELECT migration_id FROM {MIGRATION_TABLE}"  # noqa: S608 - a constant
            applied = {r[0] for r in conn.execute(query)}
    return MigrationState(
        applied=tuple(i for i in ids if i in applied),
        pending=tuple(i for i in ids if i not in applied),
    )


def apply(cfg: DatabaseConfig) -> list[str]:
    """Apply every pending migration; returns the ids applied (empty when up to date)."""
    with db.connect(cfg, "migrate-lock", autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (ADVISORY_KEY,))
        backend = _backend(cfg)
        try:
            backend.init_database()
            backend.break_lock()  # we hold the advisory lock: any yoyo lock row is stale
            with backend.lock():
                pending = backend.to_apply(read_migrations(SOURCE))
                backend.apply_migrations(pending)
            return [m.id for m in pending]
        finally:
            backend.connection.close()
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
