"""Schema migrations with yoyo: idempotent, safe with several instances, survive a kill."""

from __future__ import annotations

import threading

import psycopg

from edge_agent.collect import migrate
from edge_agent.collect.config import DatabaseConfig


def test_migrations_apply_once(pg_database: str) -> None:
    """A fresh database gets every migration; a second run applies nothing."""
    cfg = DatabaseConfig(dsn=pg_database)
    before = migrate.state(cfg)
    assert before.applied == ()
    assert before.pending == ("0001.initial", "0002.views")
    assert migrate.apply(cfg) == ["0001.initial", "0002.views"]
    assert migrate.apply(cfg) == []
    assert migrate.state(cfg).pending == ()


def test_concurrent_instances_migrate_once(pg_database: str) -> None:
    """Three collectors starting together: one applies, the others find it done."""
    cfg = DatabaseConfig(dsn=pg_database)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(migrate.apply(cfg))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(len(r) for r in results) == [0, 0, 2]


def test_stale_yoyo_lock_of_a_killed_migrator_is_cleared(pg_database: str) -> None:
    """A lock row left by a SIGKILLed migration does not block the next start."""
    cfg = DatabaseConfig(dsn=pg_database)
    migrate.apply(cfg)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    assert migrate.apply(cfg) == []
