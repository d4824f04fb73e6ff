"""A real PostgreSQL restart under a running collector (a private cluster, not the shared one).

The server is crash-stopped (``pg_ctl stop -m immediate``: open transactions are lost,
crash recovery on start) while the collector drains a backlog, and later stopped cleanly
while the collector is idle. Every message is stored exactly once in the end.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from edge_agent.collect import migrate
from edge_agent.collect.config import DatabaseConfig
from tests.integration.collect_support import Publisher, scalar, wait_until
from tests.integration.test_collector import assert_stored_once, start, stream
from tests.plugins.broker import Mosquitto
from tests.plugins.postgres import PrivatePostgres

pytestmark = pytest.mark.integration


def test_server_restart_loses_and_duplicates_nothing(
    private_postgres: PrivatePostgres, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Crash-restart of the server mid-drain, clean restart while idle: all stored once."""
    server = private_postgres
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE fleet")
    dsn = f"host=127.0.0.1 port={server.port} user=postgres dbname=fleet"
    migrate.apply(DatabaseConfig(dsn=dsn))
    collector = start(tmp_path, dsn, mosquitto, "r1", max_messages=20)
    pub = Publisher(mosquitto.port)
    try:
        pub.publish(stream(1, 400))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") > 100, 30)
        server.stop("immediate")
        time.sleep(1.0)  # the collector meets a dead server for a while
        server.start()
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 1200, 90), (
            collector.output
        )
        assert_stored_once(dsn, 400)
        server.stop("fast")
        server.start()
        pub.publish(stream(401, 450))
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == 1350, 60), (
            collector.output
        )
        assert_stored_once(dsn, 450)
        # The crash was met by a batch (logged); the clean restart may be met by the
        # heartbeat first, which reconnects quietly.
        assert collector.count("Database unavailable") >= 1
        assert collector.count("Database available again") >= 1
    finally:
        pub.close()
        assert collector.stop() == 0
