"""The collector process against a real Mosquitto and a real PostgreSQL.

Crashes are real: the collector is SIGKILLed while a batch is open in PostgreSQL (its
transaction is held on a table lock the test takes, so the kill lands mid-batch for
sure), and its database connection is killed with ``pg_terminate_backend`` (what a
server restart does to a client, without restarting the machine's shared server).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from tests.edge_agent.collect.samples import kpi_data, payload, stop_data, topic
from tests.integration.collect_support import (
    CollectorProcess,
    Publisher,
    backend_waiting_on_lock,
    backends,
    collector_toml,
    query,
    scalar,
    wait_until,
)
from tests.plugins.broker import Mosquitto

pytestmark = pytest.mark.integration


def stream(first: int, last: int, agents: int = 3) -> list[tuple[str, bytes]]:
    """Numbered messages first..last of each agent: mostly telemetry, some of every kind."""
    out = []
    for i in range(first, last + 1):
        for a in range(agents):
            agent = f"gw-{a}"
            if i % 20 == 0:
                kind, data = "kpi", kpi_data(window=f"hour:2026-11-26T{i // 20:04d}")
            elif i % 33 == 0:
                kind, data = "stop", stop_data(start=f"2026-11-26T08:00:{i % 60:02d}.{i:03d}Z")
            elif i % 10 == 0:
                kind, data = "health", None
            else:
                kind, data = "telemetry", None
            out.append((topic(kind, agent), payload(kind, i, agent=agent, data=data)))
    return out


def expected(first: int, last: int, agents: int = 3) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for i in range(first, last + 1):
        kind = (
            "kpi"
            if i % 20 == 0
            else "stop"
            if i % 33 == 0
            else "health"
            if i % 10 == 0
            else "telemetry"
        )
        kinds[kind] += agents
    return kinds


def assert_stored_once(dsn: str, last: int, agents: int = 3) -> None:
    """Every numbered message 1..last of every agent is stored exactly once, none missing."""
    kinds = expected(1, last, agents)
    assert scalar(dsn, "SELECT count(*) FROM ledger") == last * agents
    assert scalar(dsn, "SELECT count(*) FROM telemetry") == kinds["telemetry"]
    assert scalar(dsn, "SELECT count(*) FROM health") == kinds["health"]
    assert scalar(dsn, "SELECT count(*) FROM kpi_records") == kinds["kpi"]
    assert scalar(dsn, "SELECT count(*) FROM stop_events") == kinds["stop"]
    assert scalar(dsn, "SELECT count(*) FROM quarantine") == 0
    assert query(
        dsn, "SELECT agent, last_seq, missing, messages FROM agent_overview ORDER BY agent"
    ) == [(f"gw-{a}", last, 0, last) for a in range(agents)]


def start(
    tmp_path: Path, dsn: str, broker: Mosquitto, client_id: str, **kw: object
) -> CollectorProcess:
    path = tmp_path / f"{client_id}.toml"
    path.write_text(collector_toml(dsn=dsn, port=broker.port, client_id=client_id, **kw))  # type: ignore[arg-type]
    return CollectorProcess(path, client_id).start()


def test_sigkill_mid_batch_loses_nothing_and_stores_nothing_twice(
    pg_migrated: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Killed inside an open batch, then anywhere in a drain: every message stored once.

    The first kill lands while the collector's transaction waits on a lock the test holds.
    """
    dsn = pg_migrated
    collector = start(tmp_path, dsn, mosquitto, "c1")
    pub = Publisher(mosquitto.port)
    try:
        pub.publish(stream(1, 40))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 120, 30)

        # Hold the collector's next transaction on a lock, then kill it inside that batch.
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
            pub.publish(stream(41, 200))
            assert wait_until(lambda: bool(backend_waiting_on_lock(dsn, "c1")), 20), (
                collector.output
            )
            collector.kill()
            blocker.rollback()
        # The open batch was rolled back: only what was committed before is there.
        assert scalar(dsn, "SELECT count(*) FROM ledger") == 120

        collector = start(tmp_path, dsn, mosquitto, "c1")
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 600, 60), (
            collector.output
        )
        assert_stored_once(dsn, 200)

        # Second crash: anywhere during a drain of 900 more messages.
        pub.publish(stream(201, 500))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") > 700, 30)
        collector.kill()
        collector = start(tmp_path, dsn, mosquitto, "c1")
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 1500, 60), (
            collector.output
        )
        assert_stored_once(dsn, 500)
    finally:
        pub.close()
        collector.stop()


def test_database_connection_killed_is_retried_without_loss(
    pg_migrated: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Its connection killed mid-batch and while idle: rewritten on a new one, no loss or dup.

    pg_terminate_backend is what a server restart does to a client; the machine's shared
    server itself is not restarted.
    """
    dsn = pg_migrated
    collector = start(tmp_path, dsn, mosquitto, "c2")
    pub = Publisher(mosquitto.port)
    try:
        pub.publish(stream(1, 30))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 90, 30)
        with psycopg.connect(dsn) as blocker:
            blocker.execute("LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE")
            pub.publish(stream(31, 100))
            assert wait_until(lambda: bool(backend_waiting_on_lock(dsn, "c2")), 20)
            for pid in backend_waiting_on_lock(dsn, "c2"):
                blocker.execute("SELECT pg_terminate_backend(%s)", (pid,))
            blocker.rollback()
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 300, 60), (
            collector.output
        )
        # Idle connection killed between batches.
        assert wait_until(lambda: bool(backends(dsn, "c2")), 10)
        query(
            dsn,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'edge-agent-collect/c2'",
        )
        pub.publish(stream(101, 160))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 480, 60), (
            collector.output
        )
        assert_stored_once(dsn, 160)
        assert collector.count("Database unavailable") >= 1
        assert collector.count("Database available again") >= 1
        assert wait_until(
            lambda: scalar(dsn, "SELECT db_retries FROM collector_instances") >= 1, 10
        )
    finally:
        pub.close()
        assert collector.stop() == 0


def test_two_instances_share_the_stream(
    pg_migrated: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """With $share/fleet/edge/# each message goes to one of two instances; all stored once."""
    dsn = pg_migrated
    a = start(tmp_path, dsn, mosquitto, "ca", group="fleet", max_messages=20)
    b = start(tmp_path, dsn, mosquitto, "cb", group="fleet", max_messages=20)
    pub = Publisher(mosquitto.port)
    try:
        pub.publish(stream(1, 300, agents=4))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 1200, 60), (
            a.output + b.output
        )
        assert_stored_once(dsn, 300, agents=4)
        assert wait_until(
            lambda: scalar(dsn, "SELECT sum(stored) FROM collector_instances") == 1200, 10
        )
        per_instance = dict(query(dsn, "SELECT client_id, stored FROM collector_instances"))
        assert per_instance["ca"] > 0
        assert per_instance["cb"] > 0
        assert scalar(dsn, "SELECT sum(duplicates) FROM collector_instances") == 0
    finally:
        pub.close()
        assert a.stop() == 0
        assert b.stop() == 0


def status(dsn: str) -> dict[str, dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "edge_agent.collect", "status", "--dsn", dsn, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {a["agent"]: a for a in json.loads(out.stdout)["agents"]}


def test_gap_detected_then_healed_by_a_late_message(
    pg_migrated: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Seq 4 held back: the status shows one number missing, then none once 4 arrives."""
    dsn = pg_migrated
    collector = start(tmp_path, dsn, mosquitto, "c4")
    pub = Publisher(mosquitto.port)
    try:
        pub.publish(
            (topic("telemetry", "gw-9"), payload("telemetry", i, agent="gw-9"))
            for i in (1, 2, 3, 5, 6)
        )
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 5, 30)
        gw = status(dsn)["gw-9"]
        assert (gw["last_seq"], gw["missing"], gw["gaps_detected"], gw["gaps_filled"]) == (
            6,
            1,
            1,
            0,
        )
        pub.publish([(topic("health", "gw-9"), payload("health", 4, agent="gw-9"))])
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 6, 30)
        gw = status(dsn)["gw-9"]
        assert (gw["last_seq"], gw["missing"], gw["gaps_detected"], gw["gaps_filled"]) == (
            6,
            0,
            1,
            1,
        )
        text = subprocess.run(
            [sys.executable, "-m", "edge_agent.collect", "status", "--dsn", dsn],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert "gw-9" in text
        assert "c4 on" in text
    finally:
        pub.close()
        assert collector.stop() == 0
