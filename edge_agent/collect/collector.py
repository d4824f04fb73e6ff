"""The collector's loop: take a batch, store it in one transaction, commit, then acknowledge.

One thread does the database work (this one); paho's thread only receives
(:mod:`edge_agent.collect.mqtt`). Per batch:

1. up to ``batch.max_messages`` deliveries, waiting at most ``batch.max_wait_ms`` after the
   first one;
2. :func:`edge_agent.collect.store.prepare` each (pure), then :func:`~.store.write` all in
   one transaction and commit;
3. acknowledge every delivery of the batch, in arrival order.

Failures: a lost connection, a server restart or shutdown, a deadlock (anything
:func:`edge_agent.collect.db.is_transient` says) rolls the batch back; the collector
reconnects with exponential backoff (``database.reconnect_min_s`` .. ``reconnect_max_s``)
and writes the same batch again, still unacknowledged. Loss and recovery are logged once
each. A data error PostgreSQL raises despite the checks in :mod:`~.rows` replays the batch
one message per transaction and quarantines the one refused. A stop request (SIGTERM)
finishes the batch in hand when the database answers, otherwise leaves it unacknowledged
for the broker to re-deliver.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from edge_agent import __version__
from edge_agent.collect import db, migrate, store
from edge_agent.collect.config import CollectorConfig, MigrateMode
from edge_agent.collect.envelope import Checker
from edge_agent.collect.mqtt import Delivery, Subscriber

log = logging.getLogger("edge_agent.collect")

_HEARTBEAT = """
INSERT INTO collector_instances (client_id, hostname, pid, version, subscriptions, started_at,
    heartbeat_at, batches, messages, stored, duplicates, quarantined, db_retries, last_error,
    last_error_at)
VALUES (%s, %s, %s, %s, %s, to_timestamp(%s), now(), %s, %s, %s, %s, %s, %s, %s,
        to_timestamp(%s))
ON CONFLICT (client_id) DO UPDATE SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
    version = EXCLUDED.version, subscriptions = EXCLUDED.subscriptions,
    started_at = EXCLUDED.started_at, heartbeat_at = now(), batches = EXCLUDED.batches,
    messages = EXCLUDED.messages, stored = EXCLUDED.stored, duplicates = EXCLUDED.duplicates,
    quarantined = EXCLUDED.quarantined, db_retries = EXCLUDED.db_retries,
    last_error = EXCLUDED.last_error, last_error_at = EXCLUDED.last_error_at
"""


class MigrationsPending(RuntimeError):
    """``migrate = "check"`` and the database schema is behind this collector."""


@dataclass(slots=True)
class Counters:
    """What this instance did since it started."""

    batches: int = 0
    messages: int = 0
    db_retries: int = 0
    isolated_batches: int = 0
    totals: store.BatchResult = field(default_factory=store.BatchResult)
    last_error: str = ""
    last_error_at: float | None = None


class Collector:
    """One collector instance (``edge-agent-collect run``)."""

    def __init__(
        self,
        cfg: CollectorConfig,
        schemas: Checker,
        *,
        stop: threading.Event | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.schemas = schemas
        self.stop_event = stop or threading.Event()
        self._wait = sleep or self.stop_event.wait
        self.inbox: queue.SimpleQueue[Delivery] = queue.SimpleQueue()
        self.subscriber = Subscriber(cfg.mqtt, self.inbox)
        self.counters = Counters()
        self._conn: psycopg.Connection | None = None
        self._db_down_since: float | None = None
        self._started = time.time()
        self._next_heartbeat = 0.0

    # -- lifecycle -----------------------------------------------------------------
    def prepare_database(self) -> None:
        """Apply or check migrations before subscribing (retried while the DB is down)."""
        delay = self.cfg.database.reconnect_min_s
        while not self.stop_event.is_set():
            try:
                if self.cfg.database.migrate is MigrateMode.AUTO:
                    applied = migrate.apply(self.cfg.database)
                    if applied:
                        log.info("Applied migrations ids=%s", ",".join(applied))
                else:
                    pending = migrate.state(self.cfg.database).pending
                    if pending:
                        raise MigrationsPending(
                            "database schema is behind this collector: run "
                            f"`edge-agent-collect migrate` (pending: {', '.join(pending)})"
                        )
            except psycopg.Error as exc:
                if not db.is_transient(exc):
                    raise
                self._db_lost(exc)
                self._wait(delay)
                delay = min(delay * 2, self.cfg.database.reconnect_max_s)
            else:
                self._db_recovered()
                return

    def run(self) -> int:
        """Run until :attr:`stop_event` is set; returns the process exit code."""
        self.prepare_database()
        if self.stop_event.is_set():
            return 0
        self.subscriber.start()
        verifier = None
        if self.cfg.evidence.verify_interval_s > 0:
            from edge_agent.collect.verifier import PeriodicVerifier

            verifier = PeriodicVerifier(self.cfg, self.stop_event)
            verifier.start()
        log.info(
            "Collector started client_id=%s subscriptions=%s database=%s",
            self.cfg.mqtt.client_id,
            ",".join(self.cfg.mqtt.subscriptions()),
            db.describe_target(self.cfg.database),
        )
        try:
            while not self.stop_event.is_set():
                batch = self._take()
                if batch:
                    self.process(batch)
                self._heartbeat()
        finally:
            self.subscriber.stop()
            if verifier is not None:
                verifier.join(timeout=10.0 if self.stop_event.is_set() else 0.0)
            self._heartbeat(force=True)
            if self._conn is not None:
                self._conn.close()
            log.info(
                "Collector stopped messages=%d stored=%d duplicates=%d quarantined=%d",
                self.counters.messages,
                self.counters.totals.stored,
                self.counters.totals.duplicates,
                self.counters.totals.quarantined,
            )
        return 0

    # -- batches -------------------------------------------------------------------
    def _take(self) -> list[Delivery]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.cfg.batch.max_wait_ms / 1000.0
        while len(batch) < self.cfg.batch.max_messages:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[Delivery]) -> store.BatchResult | None:
        """Store a batch (retrying through database outages), then acknowledge it."""
        items = [store.prepare(d.topic, d.payload, self.schemas) for d in batch]
        result = self._store(items)
        if result is None:
            return None  # stopping while the database is away: the broker re-delivers
        for delivery in batch:
            self.subscriber.ack(delivery)
        self.counters.batches += 1
        self.counters.messages += len(batch)
        self.counters.totals.add(result)
        return result

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            self._conn = db.connect(self.cfg.database, self.cfg.mqtt.client_id, autocommit=True)
        return self._conn

    def _store(self, items: list[store.Item]) -> store.BatchResult | None:
        delay = self.cfg.database.reconnect_min_s
        while True:
            try:
                conn = self._connection()
                try:
                    with conn.transaction():
                        result = store.write(conn, items)
                except psycopg.Error as exc:
                    if not db.is_content_error(exc):
                        raise
                    log.warning(
                        "Database refused a batch, storing it message by message error=%s",
                        db.short_error(exc),
                    )
                    result = self._store_isolated(conn, items)
            except psycopg.Error as exc:
                self.counters.db_retries += 1
                self._db_lost(exc)
                if self._conn is not None and (self._conn.broken or self._conn.closed):
                    self._conn.close()
                    self._conn = None
                if self.stop_event.is_set() or self._wait(delay):
                    return None
                delay = min(delay * 2, self.cfg.database.reconnect_max_s)
            else:
                self._db_recovered()
                return result

    def _store_isolated(
        self, conn: psycopg.Connection, items: list[store.Item]
    ) -> store.BatchResult:
        """One transaction per message; the ones PostgreSQL refuses go to quarantine."""
        self.counters.isolated_batches += 1
        total = store.BatchResult()
        for item in items:
            try:
                with conn.transaction():
                    total.add(store.write(conn, [item]))
            except psycopg.Error as exc:
                if not db.is_content_error(exc):
                    raise
                reason = f"database: {db.short_error(exc)}"
                log.warning("Quarantined a message the database refused reason=%s", reason)
                with conn.transaction():
                    total.add(store.write(conn, [store.quarantine_item(item, reason)]))
        return total

    # -- database health -----------------------------------------------------------
    def _db_lost(self, exc: BaseException) -> None:
        text = db.short_error(exc)
        self.counters.last_error = text
        self.counters.last_error_at = time.time()
        if self._db_down_since is None:
            self._db_down_since = time.monotonic()
            level = logging.WARNING if db.is_transient(exc) else logging.ERROR
            log.log(
                level,
                "Database unavailable, retrying with backoff target=%s error=%s",
                db.describe_target(self.cfg.database),
                text,
            )

    def _db_recovered(self) -> None:
        if self._db_down_since is not None:
            log.warning(
                "Database available again after_s=%.1f",
                time.monotonic() - self._db_down_since,
            )
            self._db_down_since = None

    def _heartbeat(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self.cfg.batch.heartbeat_s
        if self._db_down_since is not None and not force:
            return
        c = self.counters
        try:
            conn = self._connection()
            conn.execute(
                _HEARTBEAT,
                (
                    self.cfg.mqtt.client_id,
                    socket.gethostname(),
                    os.getpid(),
                    __version__,
                    ",".join(self.cfg.mqtt.subscriptions()),
                    self._started,
                    c.batches,
                    c.messages,
                    c.totals.stored,
                    c.totals.duplicates,
                    c.totals.quarantined,
                    c.db_retries,
                    c.last_error or None,
                    c.last_error_at,
                ),
            )
        except psycopg.Error as exc:
            log.debug("Heartbeat not written error=%s", db.short_error(exc))
