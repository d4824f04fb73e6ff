"""Schema migrations with yoyo: idempotent, safe with several instances, survive a kill."""

from __future__ import annotations

import threading

import psycopg

from edge_agent.collect import migrate
from edge_agent.collect.config import DatabaseConfig

ALL = ("0001.initial", "0002.views", "0003.contracts_evidence")


def test_migrations_apply_once(pg_database: str) -> None:
    """A fresh database gets every migration; a second run applies nothing."""
    cfg = DatabaseConfig(dsn=pg_database)
    before = migrate.state(cfg)
    assert before.applied == ()
    assert before.pending == ALL
    assert migrate.apply(cfg) == list(ALL)
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
    assert sorted(len(r) for r in results) == [0, 0, len(ALL)]


def test_stale_yoyo_lock_of_a_killed_migrator_is_cleared(pg_database: str) -> None:
    """A lock row left by a SIGKILLed migration does not block the next start."""
    cfg = DatabaseConfig(dsn=pg_database)
    migrate.apply(cfg)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    assert migrate.apply(cfg) == []


def test_version_3_rolls_back_and_applies_again(pg_database: str) -> None:
    """0003 has a working rollback: the version-2 view comes back under its old name."""
    from yoyo import read_migrations

    cfg = DatabaseConfig(dsn=pg_database)
    migrate.apply(cfg)
    backend = migrate._backend(cfg)
    try:
        with backend.lock():
            third = read_migrations(migrate.SOURCE).filter(lambda m: m.id == ALL[2])
            backend.rollback_migrations(backend.to_rollback(third))
    finally:
        backend.connection.close()
    assert migrate.state(cfg).pending == (ALL[2],)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'agents'"
            )
        }
    assert "contract_compliance" in names
    assert "contract_compliance_from_days" not in names
    assert not {"signed_records", "device_contract_status", "device_contract_alerts"} & names
    assert "verification_detail" not in columns
    assert migrate.apply(cfg) == [ALL[2]]


def test_version_3_takes_over_records_stored_by_version_2(pg_database: str) -> None:
    """Signed envelopes and contract records a version-2 collector kept are carried over."""
    import json

    from yoyo import read_migrations

    from .recorded import recorded

    cfg = DatabaseConfig(dsn=pg_database)
    backend = migrate._backend(cfg)
    try:
        backend.init_database()
        with backend.lock():
            first_two = read_migrations(migrate.SOURCE).filter(lambda m: m.id != ALL[2])
            backend.apply_migrations(backend.to_apply(first_two))
    finally:
        backend.connection.close()
    docs = [json.loads(p) for _t, p in recorded() if b'"seq"' in p]
    contract = [d for d in docs if d["kind"].startswith("contract")]
    with psycopg.connect(pg_database, autocommit=True) as conn:
        for d in contract:  # what version 2 did with them: other_records, raw kept
            conn.execute(
                "INSERT INTO other_records (agent, epoch, seq, kind, ts, topic, validated, "
                "data, raw) VALUES (%s, %s, %s, %s, %s, 't', true, %s, %s)",
                (
                    d["agent"],
                    d["epoch"],
                    d["seq"],
                    d["kind"],
                    d["ts"],
                    json.dumps(d["data"]),
                    json.dumps(d),
                ),
            )
    assert migrate.apply(cfg) == [ALL[2]]
    with psycopg.connect(pg_database, autocommit=True) as conn:

        def one(sql: str) -> object:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

        assert one("SELECT count(*) FROM signed_records") == len(contract)
        statuses = [d for d in contract if d["kind"] == "contract"]
        latest = max(statuses, key=lambda d: d["data"]["at"])
        assert one("SELECT seq FROM device_contract_status") == latest["seq"]
        periods = [d for d in contract if d["kind"] == "contract_period"]
        assert one("SELECT count(*) FROM device_contract_periods") == len(periods)
        assert one("SELECT count(*) FROM device_contract_period_revisions") == len(periods)
        alerts = {d["data"]["alert_id"] for d in contract if d["kind"] == "contract_alert"}
        assert one("SELECT count(*) FROM device_contract_alerts") == len(alerts)
