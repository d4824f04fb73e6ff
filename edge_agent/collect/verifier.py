"""Periodic evidence verification inside ``edge-agent-collect run``.

Enabled with ``[evidence] verify_interval_s`` above 0.

A daemon thread with its own database connection: every interval it runs
:func:`edge_agent.collect.verification.run` with ``changed_only`` (agents with a signed
record received since their last check). Several instances of a shared group take turns:
the run happens under a PostgreSQL session advisory lock taken with ``pg_try_advisory_lock``,
so an instance that finds it held skips that round. A failure (database away, a key file
unreadable) is logged and retried at the next interval; it never stops the collector.
"""

from __future__ import annotations

import logging
import threading

import psycopg

from edge_agent.collect import db, verification
from edge_agent.collect.config import CollectorConfig

log = logging.getLogger("edge_agent.collect.verifier")

# pg_advisory_lock key: "edgevrfy" as an int8 (distinct from the migration lock).
ADVISORY_KEY = int.from_bytes(b"edgevrfy", "big") - 2**63


class PeriodicVerifier:
    """Runs ``verify --changed`` every ``verify_interval_s`` until stopped."""

    def __init__(self, cfg: CollectorConfig, stop: threading.Event) -> None:
        self.cfg = cfg
        self.stop_event = stop
        self.rounds = 0
        self._thread = threading.Thread(target=self._loop, name="verifier", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait for the thread after the stop event was set (bounded)."""
        self._thread.join(timeout)

    def _loop(self) -> None:
        interval = self.cfg.evidence.verify_interval_s
        while not self.stop_event.wait(interval):
            try:
                self.round()
            except (psycopg.Error, verification.TrustError, OSError) as exc:
                log.warning("Periodic verification failed error=%s", str(exc).splitlines()[0])

    def round(self) -> list[verification.AgentVerdict]:
        """One round, when no other instance holds the lock; returns the verdicts."""
        with db.connect(self.cfg.database, "verify", autocommit=True) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).fetchone()
            if not row or not row[0]:
                return []
            try:
                verdicts = verification.run(conn, self.cfg.evidence, changed_only=True)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
        self.rounds += 1
        return verdicts
