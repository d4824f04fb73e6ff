"""The collector's batch loop against a real PostgreSQL (no broker needed)."""

from __future__ import annotations

import psycopg

from edge_agent.collect.collector import Collector
from edge_agent.collect.config import BatchConfig, BrokerConfig, CollectorConfig, DatabaseConfig
from edge_agent.collect.mqtt import Delivery
from edge_agent.collect.schemas import load_schemas

from .samples import payload, telemetry_data, topic
from .test_store import one, rows


def make(dsn: str) -> Collector:
    cfg = CollectorConfig(
        database=DatabaseConfig(dsn=dsn, reconnect_min_s=0.05, reconnect_max_s=0.1),
        mqtt=BrokerConfig(host="127.0.0.1", port=1, client_id="unit"),
        batch=BatchConfig(),
    )
    return Collector(cfg, load_schemas())


def deliveries(*payloads: bytes) -> list[Delivery]:
    return [Delivery(topic("telemetry"), p, i + 1, 1, 0) for i, p in enumerate(payloads)]


def test_a_message_the_database_refuses_is_quarantined_alone(pg_migrated: str) -> None:
    """A message PostgreSQL refuses (a CHECK added here) is quarantined; the rest is stored."""
    with psycopg.connect(pg_migrated, autocommit=True) as conn:
        conn.execute("ALTER TABLE telemetry ADD CONSTRAINT no_boom CHECK (device <> 'boom')")
    collector = make(pg_migrated)
    result = collector.process(
        deliveries(
            payload("telemetry", 1),
            payload("telemetry", 2, data=telemetry_data(device="boom")),
            payload("telemetry", 3),
        )
    )
    assert result is not None
    assert (result.stored, result.quarantined) == (2, 1)
    assert collector.counters.isolated_batches == 1
    reason = one(pg_migrated, "SELECT reason FROM quarantine")
    assert reason.startswith("database: CheckViolation [23514]")
    assert rows(pg_migrated, "SELECT last_seq, missing FROM agent_overview") == [(3, 0)]


def test_database_down_keeps_the_batch_until_it_returns(pg_migrated: str) -> None:
    """While the database refuses connections the batch is retried, then stored once."""
    collector = make("host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=1")
    attempts: list[float] = []

    def sleep(delay: float) -> bool:
        attempts.append(delay)
        if len(attempts) == 3:  # the "server" comes back
            collector.cfg = CollectorConfig(
                database=DatabaseConfig(dsn=pg_migrated),
                mqtt=collector.cfg.mqtt,
                batch=collector.cfg.batch,
            )
        return False

    collector._wait = sleep
    result = collector.process(deliveries(payload("telemetry", 1)))
    assert result is not None
    assert result.stored == 1
    assert attempts == [0.05, 0.1, 0.1]
    assert collector.counters.db_retries == 3
    assert one(pg_migrated, "SELECT count(*) FROM telemetry") == 1


def test_stop_while_the_database_is_down_acknowledges_nothing(pg_migrated: str) -> None:
    """A stop request during an outage leaves the batch to the broker's re-delivery."""
    collector = make("host=127.0.0.1 port=1 user=postgres dbname=x connect_timeout=1")
    collector.stop_event.set()
    assert collector.process(deliveries(payload("telemetry", 1))) is None
    assert collector.counters.batches == 0
