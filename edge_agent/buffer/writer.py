"""The buffer's writer thread: the only code that touches the writer connection.

The event loop never commits. It hands the thread two kinds of work:

* **rows** (readings, stored as one ``frames`` row per poll by :mod:`.blocks`; comms
  events, intervals, the sample journal) through :meth:`Writer.put`, which
  never blocks: rows wait in a bounded queue (``queue_max_rows``; when full the
  newest rows are dropped and counted) and are committed in one transaction per
  batch, when ``flush_rows`` are waiting or the oldest waited ``flush_interval_ms``
  (``synchronous=NORMAL``: a crash of the agent loses nothing committed, a power
  cut may lose the last batch). A durable job can take the rows waiting into its
  own transaction (:meth:`Writer.rows_in`: raw telemetry referring to its frames,
  one commit a second instead of two);
* **jobs** (outbox inserts and acks, state, fetches) through :meth:`Writer.submit`,
  run in submission order, each returning a :class:`concurrent.futures.Future`.
  Durable jobs switch the connection to the configured ``outbox_sync`` mode
  (``FULL`` by default: the WAL is fsynced at commit, and that fsync also covers
  earlier NORMAL commits).

When a write fails with SQLITE_FULL the thread first frees space by the budget
order (see :mod:`.retention`) and retries once. If that does not help (real disk
full, or only never-evicted rows left) the rows stay in RAM, bounded by
``memory_max_rows`` (oldest held readings dropped and counted), ``disk_full`` is
reported and the write is retried with backoff until it succeeds. Guarantees: rows
are committed in arrival order per table; a job's future resolves only after its
commit; nothing written is lost by this module except what is counted as dropped.

Size: over 400 lines because the single SQLite writer thread: its queue, batching and
transactions are one loop's state.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from edge_agent.buffer import outbox, retention
from edge_agent.buffer.blocks import FrameWriter
from edge_agent.buffer.config import StorageConfig
from edge_agent.buffer.rows import CONVERT, INSERT, TABLES
from edge_agent.buffer.schema import plan_size
from edge_agent.buffer.telerefs import TextCache
from edge_agent.columns import ColumnPoll
from edge_agent.errors import StorageFull

log = logging.getLogger(__name__)

T = TypeVar("T")

HIGH_WATER = 0.90  # start freeing space above this share of the page cap
LOW_WATER = 0.80  # ... down to this share
MAINTENANCE_S = 1.0
AGE_PRUNE_S = 60.0
RETRY_MIN_S = 0.5
RETRY_MAX_S = 10.0
CACHE_KIB = 256  # writer connection's page cache
DISK_MARGIN = 1024 * 1024  # free bytes below which SQLITE_FULL means the disk, not the cap


def is_full(exc: BaseException) -> bool:
    """Whether a sqlite3 error is SQLITE_FULL (page cap or disk)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL" or "disk is full" in str(exc)
    )


class Writer:
    """Owns the writer connection and a thread that batches rows and runs jobs in order."""

    def __init__(
        self,
        con: sqlite3.Connection,
        config: StorageConfig,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._con = con
        # The inserts only touch the right edge of each B-tree and retention its left
        # edge: 1 MiB of page cache (SQLite's default is 2 MiB) is plenty and lowers RSS.
        con.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        self._wal_path = Path(str(config.path) + "-wal")
        self._config = config
        self._clock = clock
        self._size = plan_size(config.max_bytes)
        self._cond = threading.Condition()
        self._rows: dict[str, list[Any]] = {t: [] for t in TABLES}
        self._queued = 0
        self._first_at = 0.0
        self._jobs: deque[tuple[Callable[[sqlite3.Connection], Any], Future[Any]]] = deque()
        self._stopping = False
        self._held: dict[str, list[Any]] = {t: [] for t in TABLES}
        self._held_count = 0
        self._retry_at = 0.0
        self._retry_s = RETRY_MIN_S
        self.dropped: Counter[str] = Counter()
        self.expired: Counter[str] = Counter()
        self.written: Counter[str] = Counter()
        self.disk_full = False
        self.full_reason = ""
        # Why the last durable job (outbox insert, state) could not be stored, "" when it was.
        self.outbox_full = ""
        self.last_error: str | None = None
        self.outbox_count, _, self.last_seq = outbox.bounds(con)
        # Readings are stored as frames (one row per poll, edge_agent.buffer.blocks).
        self._frames = FrameWriter(config.raw)
        self._frames.load(con)
        # Texts of telemetry rows stored as references to frames (edge_agent.buffer.telerefs).
        self.texts = TextCache(on_lost=self._refs_lost)
        self.usage = retention.page_usage(con)
        self._next_maintenance = 0.0
        self._next_age_prune = 0.0
        self._thread = threading.Thread(target=self._run, name="buffer-writer", daemon=True)

    # -- called from the event loop ---------------------------------------------------
    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def queued(self) -> int:
        """Rows waiting in the queue."""
        return self._queued

    @property
    def held(self) -> int:
        """Rows held in RAM because the last write failed."""
        return self._held_count

    def put(self, table: str, rows: Sequence[Any], weight: int | None = None) -> int:
        """Queue rows for ``table`` without blocking; returns how many were dropped (queue full).

        ``weight``: the rows count as this many (a :class:`~edge_agent.columns.ColumnPoll`
        queued whole counts as its values); such rows are accepted or dropped together.
        """
        if not rows:
            return 0
        size = len(rows) if weight is None else weight
        with self._cond:
            if self._stopping:
                self.dropped[f"{table}:closed"] += size
                return size
            room = self._config.queue_max_rows - self._queued
            if size <= room:
                accepted, taken = rows, size
            elif weight is None:
                accepted = rows[: max(room, 0)]
                taken = len(accepted)
            else:
                accepted, taken = (), 0
            dropped = size - taken
            if dropped:
                self.dropped[f"{table}:queue_full"] += dropped
            if accepted:
                if self._queued == 0:
                    self._first_at = time.monotonic()
                    self._cond.notify()
                self._rows[table].extend(accepted)
                before = self._queued
                self._queued += taken
                if before < self._config.flush_rows <= self._queued:
                    self._cond.notify()
            return dropped

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Run ``fn(connection)`` on the writer thread after the jobs already submitted."""
        future: Future[T] = Future()
        with self._cond:
            if self._stopping:
                future.set_exception(RuntimeError("buffer is closed"))
                return future
            self._jobs.append((fn, future))
            self._cond.notify()
        return future

    def _refs_lost(self, n: int) -> None:
        # Telemetry rows whose frames were removed: deleted, counted as evicted.
        self.dropped["outbox:telemetry"] += n
        self.outbox_count -= n

    def flush_rows(self) -> Future[None]:
        """A future resolved once every row queued so far is committed (or held)."""

        def job(_con: sqlite3.Connection) -> None:
            self._flush(force=True)

        return self.submit(job)

    def stop(self, timeout: float = 30.0) -> None:
        """Flush everything, stop the thread and close the connection (blocking; call off-loop)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("Buffer writer did not stop in time: timeout_s=%s", timeout)
            return
        self._con.close()

    # -- the thread ----------------------------------------------------------------------
    def _due(self, now: float) -> bool:
        return self._queued >= self._config.flush_rows or (
            self._queued > 0 and now - self._first_at >= self._config.flush_interval_s
        )

    def _wait_timeout(self, now: float) -> float:
        deadline = self._next_maintenance
        if self._queued:
            deadline = min(deadline, self._first_at + self._config.flush_interval_s)
        if self._held_count:
            deadline = min(deadline, self._retry_at)
        return max(0.0, deadline - now)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    if (
                        self._jobs
                        or self._stopping
                        or self._due(now)
                        or now >= self._next_maintenance
                    ):
                        break
                    if self._held_count and now >= self._retry_at:
                        break
                    self._cond.wait(self._wait_timeout(now))
                jobs = list(self._jobs)
                self._jobs.clear()
                stopping = self._stopping
            self._flush(force=stopping)
            for fn, future in jobs:
                self._run_job(fn, future)
            if time.monotonic() >= self._next_maintenance:
                self.maintain()
            if stopping:
                with self._cond:
                    if self._jobs:
                        continue
                self._flush(force=True)
                if self._held_count:
                    log.error(
                        "Buffer closed with rows it could not write: rows=%d reason=%s",
                        self._held_count,
                        self.full_reason or self.last_error,
                    )
                return

    def _run_job(self, fn: Callable[[sqlite3.Connection], Any], future: Future[Any]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(self._con)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def _take_rows(self, force: bool) -> dict[str, list[Any]] | None:
        with self._cond:
            if not self._queued or not (force or self._due(time.monotonic())):
                return None
            rows = self._rows
            self._rows = {t: [] for t in TABLES}
            self._queued = 0
            return rows

    def _batch(self, force: bool) -> dict[str, list[Any]] | None:
        """The rows due (queued and held), taken out of the queue; None when none are."""
        rows = self._take_rows(force)
        retry_held = self._held_count > 0 and (force or time.monotonic() >= self._retry_at)
        if rows is None and not retry_held:
            return None
        batch: dict[str, list[Any]] = {t: [] for t in TABLES}
        for table in TABLES:
            batch[table].extend(self._held[table])
            if rows is not None:
                # Readings stay objects until the transaction (their series ids live there).
                convert = CONVERT.get(table)
                batch[table].extend(convert(rows[table]) if convert else rows[table])
        self._held = {t: [] for t in TABLES}
        self._held_count = 0
        return batch if any(batch.values()) else None

    def _flush(self, *, force: bool) -> None:
        batch = self._batch(force)
        if batch is None:
            return
        try:
            self._insert(batch)
        except sqlite3.Error as exc:
            if is_full(exc) and self._make_room():
                try:
                    self._insert(batch)
                except sqlite3.Error as again:
                    self._hold(batch, again)
                    return
            else:
                self._hold(batch, exc)
                return
        self._stored(batch)

    def _stored(self, batch: Mapping[str, Sequence[Any]]) -> None:
        self._recovered()
        for table, items in batch.items():
            if items:
                self.written[table] += _count(items)
        self.usage = retention.page_usage(self._con)

    def _insert(self, batch: Mapping[str, Sequence[Any]]) -> None:
        con = self._con
        con.execute("BEGIN")
        try:
            frames = self._insert_rows(con, batch)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            self._frames.forget()  # layouts, ids and cuts of the rolled-back transaction
            raise
        self.written["frames"] += frames
        self._frames.committed()

    def _insert_rows(self, con: sqlite3.Connection, batch: Mapping[str, Sequence[Any]]) -> int:
        frames = 0
        for table in TABLES:
            if not batch[table]:
                continue
            if table == "readings":
                frames = self._frames.insert(con, batch[table])
            else:
                con.executemany(INSERT[table], batch[table])
        return frames

    def rows_in(self, con: sqlite3.Connection) -> Callable[[BaseException | None], None]:
        """Insert every queued and held row inside the caller's open transaction.

        For a durable job whose rows refer to them (raw telemetry, see
        :mod:`.telerefs`): one commit instead of two. Returns ``settle``, to call with
        None once the caller committed, or with the error once it rolled back (the
        rows are then held and retried like a failed batch of their own).
        """
        batch = self._batch(force=True)
        if batch is None:
            return _settled
        try:
            frames = self._insert_rows(con, batch)
        except BaseException:
            self._frames.forget()
            self._restore(batch)
            raise

        def settle(error: BaseException | None) -> None:
            if error is None:
                self.written["frames"] += frames
                self._frames.committed()
                self._stored(batch)
            else:
                self._frames.forget()
                self._restore(batch)
                if isinstance(error, sqlite3.Error):
                    self._set_error(error)

        return settle

    def _restore(self, batch: dict[str, list[Any]]) -> None:
        """Rows taken for a transaction that did not commit: held again, first in line."""
        for table in TABLES:
            self._held[table][:0] = batch[table]
        self._held_count = sum(map(_count, self._held.values()))
        self._retry_at = time.monotonic()

    def _hold(self, batch: dict[str, list[Any]], exc: sqlite3.Error) -> None:
        limit = self._config.memory_max_rows
        total = sum(map(_count, batch.values()))
        excess = total - limit
        if excess > 0:
            # Raw readings go first, oldest first; events and intervals are kept longer.
            cut, values = _oldest(batch["readings"], excess)
            del batch["readings"][:cut]
            self.dropped["readings:memory_full"] += values
            excess -= values
            for table in ("comms_events", "intervals"):
                if excess > 0:
                    cut = min(excess, len(batch[table]))
                    del batch[table][:cut]
                    self.dropped[f"{table}:memory_full"] += cut
                    excess -= cut
        self._held = batch
        self._held_count = sum(map(_count, batch.values()))
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        self._set_error(exc)

    def _set_error(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        full = is_full(exc)
        reason = self._full_reason() if full else ""
        if full and not self.disk_full:
            log.error(
                "Buffer cannot write, keeping rows in memory and retrying: reason=%s held_rows=%d",
                reason,
                self._held_count,
            )
        elif not full and message != self.last_error:
            log.error(
                "Buffer write failed, retrying: error=%r held_rows=%d", message, self._held_count
            )
        self.disk_full = self.disk_full or full
        self.full_reason = reason or self.full_reason
        self.last_error = message

    def _recovered(self) -> None:
        self._retry_s = RETRY_MIN_S
        if self.disk_full or self.last_error:
            log.warning("Buffer writes recovered: previous_error=%r", self.last_error)
        self.disk_full = False
        self.full_reason = ""
        self.last_error = None

    def _full_reason(self) -> str:
        """``budget`` when the filesystem still has room (the page cap refused), else ``disk``.

        The page count alone cannot tell: a large transaction is refused by the cap
        while the file, after its rollback, is well below it.
        """
        try:
            st = os.statvfs(self._wal_path.parent)
        except OSError:
            return "disk"
        return "budget" if st.f_bavail * st.f_frsize > DISK_MARGIN else "disk"

    def _make_room(self) -> bool:
        """Free space in budget order down to the low-water mark; True when any was freed."""
        before = sum(self.dropped.values())
        try:
            reached = retention.prune_to_budget(
                self._con, int(self._size.max_page_count * LOW_WATER), self._eviction_counts()
            )
        except sqlite3.Error as exc:
            self._set_error(exc)
            return False
        return reached or sum(self.dropped.values()) > before

    def _eviction_counts(self) -> Counter[str]:
        # Evicted outbox rows also shrink the backlog we report.
        return _BacklogCounter(self)

    def maintain(self, *, force: bool = False) -> None:
        """Retention by age (every minute, or now if forced) and the budget check; writer thread."""
        now_m = time.monotonic()
        self._next_maintenance = now_m + MAINTENANCE_S
        try:
            if force or now_m >= self._next_age_prune:
                self._next_age_prune = now_m + AGE_PRUNE_S
                retention.prune_by_age(self._con, self._config, self._clock(), self.expired)
            self.usage = retention.page_usage(self._con)
            if self.usage.used > self._size.max_page_count * HIGH_WATER:
                retention.prune_to_budget(
                    self._con, int(self._size.max_page_count * LOW_WATER), self._eviction_counts()
                )
                self.usage = retention.page_usage(self._con)
            if self.usage.free_pages > self._size.max_page_count // 10:
                retention.release_free_pages(self._con, self.usage.free_pages)
                self.usage = retention.page_usage(self._con)
        except sqlite3.Error as exc:
            self._set_error(exc)

    # -- durable jobs --------------------------------------------------------------------
    def durable(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        """Wrap a job: commit with the outbox sync mode, free space and retry once on SQLITE_FULL.

        The wrapped job raises :class:`StorageFull` when the row cannot be stored.
        """
        mode = self._config.outbox_sync.value.upper()

        def job(con: sqlite3.Connection) -> T:
            con.execute(f"PRAGMA synchronous={mode}")
            try:
                try:
                    result = fn(con)
                except sqlite3.OperationalError as exc:
                    if not is_full(exc) or not self._make_room():
                        raise
                    result = fn(con)
            except sqlite3.OperationalError as exc:
                if is_full(exc):
                    # Not the rows' condition (disk_full, logged by _set_error): the caller
                    # holds the message and reports it (event outbox_full), once.
                    self.outbox_full = self._full_reason()
                    raise StorageFull(f"buffer full ({self.outbox_full}): {exc}") from exc
                raise
            else:
                self.outbox_full = ""
                self.usage = retention.page_usage(con)
                return result
            finally:
                con.execute("PRAGMA synchronous=NORMAL")

        return job

    def wal_bytes(self) -> int:
        """Size of the WAL file (outside the page cap, inside the budget)."""
        try:
            return os.path.getsize(self._wal_path)
        except OSError:
            return 0


def _count(items: Sequence[Any]) -> int:
    """Rows in a queue list: a column poll queued whole counts as its values."""
    return sum(len(x) if type(x) is ColumnPoll else 1 for x in items)


def _oldest(items: Sequence[Any], excess: int) -> tuple[int, int]:
    """How many items from the front hold at least ``excess`` rows, and those rows."""
    taken = values = 0
    for x in items:
        if values >= excess:
            break
        taken += 1
        values += len(x) if type(x) is ColumnPoll else 1
    return taken, values


def _settled(_error: BaseException | None) -> None:
    """Nothing was taken: nothing to settle."""


class _BacklogCounter(Counter[str]):
    """Counts evictions into the writer's ``dropped`` and keeps ``outbox_count`` in step."""

    def __init__(self, writer: Writer) -> None:
        super().__init__()
        self._writer = writer

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - self.get(key, 0)
        super().__setitem__(key, value)
        self._writer.dropped[key] += delta
        if key.startswith(("outbox:", "superseded:")):
            self._writer.outbox_count -= delta
