"""``edge-agent-collect verify`` cost: a month of one machine's signed records in PostgreSQL.

Method (``make bench BENCH=collect_verify``; docs/collector.md): a month of one machine is
published through the agent's real buffer and evidence chain (the month of the evidence
tests: 1-minute samples, every window kind, stops, revisions, so-far records); its
envelopes are stored by the collector's store into a fresh database on the machine's
PostgreSQL (``EDGE_TEST_PG`` overrides the server), then ``verification.run`` checks the
agent with its annex fingerprint: reading ``signed_records``, every signature and link,
and every stored row compared with its signed copy. Printed: records, wall time, time
per signed record.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path

SERVER = os.environ.get("EDGE_TEST_PG", "host=127.0.0.1 port=5432 user=postgres")
BATCH = 500


def main() -> None:
    """Run the measurement and print its figures."""
    import psycopg

    from edge_agent.collect import migrate, store, verification
    from edge_agent.collect.config import DatabaseConfig, EvidenceConfig
    from edge_agent.collect.schemas import load_schemas
    from edge_agent.evidence.keys import KeyStore
    from tests.edge_agent.evidence.month import AGENT, build_month

    name = f"bench_verify_{uuid.uuid4().hex[:8]}"
    admin = f"{SERVER} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = f"{SERVER} dbname={name}"
    try:
        migrate.apply(DatabaseConfig(dsn=dsn))
        with tempfile.TemporaryDirectory() as tmp:
            state = Path(tmp)
            month = build_month(state, days=30)
            key = KeyStore(state).active()
            if key is None:
                raise RuntimeError("the month run created no device key")
            fingerprint = key.public.fingerprint
        schemas = load_schemas()
        envelopes = month.envelopes
        t0 = time.perf_counter()
        for i in range(0, len(envelopes), BATCH):
            items = [
                store.prepare(f"edge/site/{AGENT}/x", e.encode(), schemas)
                for e in envelopes[i : i + BATCH]
            ]
            with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
                store.write(conn, items)
        stored_s = time.perf_counter() - t0
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE chained) FROM signed_records"
            ).fetchone()
            signed, chained = (int(row[0]), int(row[1])) if row else (0, 0)
            t0 = time.perf_counter()
            (verdict,) = verification.run(
                conn, EvidenceConfig(fingerprints={AGENT: (fingerprint,)})
            )
            verify_s = time.perf_counter() - t0
        print(f"month of one machine: {len(envelopes)} messages stored in {stored_s:.1f} s")
        print(f"signed_records: {signed} ({chained} chained)")
        print(
            f"verify: {verdict.status} in {verify_s:.2f} s = "
            f"{verify_s / max(signed, 1) * 1000:.2f} ms per signed record"
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
