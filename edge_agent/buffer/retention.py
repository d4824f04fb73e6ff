"""Retention: delete rows by age per table, and keep the database under its page budget.

Runs on the buffer's writer thread. Two mechanisms:

* :func:`prune_by_age` deletes raw values (``frames``, and ``readings`` rows of
  databases written before schema 5), comms events, intervals and the sample
  journal older than their retention, and *published* KPI records / stop events older
  than theirs.
  Unpublished summaries and outbox rows are never aged out.
* :func:`prune_to_budget` frees pages until the used page count is under a target,
  in a fixed order (the contract with operators, documented in ``docs/pipeline.md``):
  raw values (``readings`` rows, then ``frames``, oldest first, except those unsent
  telemetry rows refer to: they go right after those rows) → unpublished "so far"
  KPI rows superseded by a newer row of the same record (key ``superseded:kpi``, not a
  loss) → the sample journal (oldest first) → published summaries → published evidence records →
  comms events → unpublished
  outbox rows by priority, least important first (telemetry, then health) → state
  intervals. Outbox rows at ``Priority.HIGH`` and every ``kpi``/``stop`` row are
  never evicted: if only they remain the caller reports :class:`StorageFull`.

Every deleted row is counted in a :class:`DropCounts` under a stable key
(``readings``: values, whether they were ``readings`` rows or held in ``frames``;
``kpi_records``, ``outbox:telemetry`` ...), which health telemetry reads. Nothing here
sleeps or spawns threads.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass

from edge_agent.buffer.config import HOUR_S, StorageConfig
from edge_agent.buffer.outbox import MessageKind, Priority
from edge_agent.buffer.telerefs import referenced_floor

DropCounts = Counter[str]

# Rows deleted per statement while freeing space: large enough to free pages fast,
# small enough that one transaction stays short on an SD card.
CHUNK_ROWS = 2000
# A frame holds a whole poll (up to hundreds of values): budget eviction deletes fewer.
FRAME_CHUNK_ROWS = 100


@dataclass(frozen=True, slots=True)
class PageUsage:
    """Page accounting of the main database file."""

    page_count: int
    free_pages: int

    @property
    def used(self) -> int:
        """Pages holding data (the freelist is reusable without growing the file)."""
        return self.page_count - self.free_pages


def page_usage(con: sqlite3.Connection) -> PageUsage:
    """Current page count and freelist length."""
    pages = int(con.execute("PRAGMA page_count").fetchone()[0])
    free = int(con.execute("PRAGMA freelist_count").fetchone()[0])
    return PageUsage(pages, free)


def _delete(
    con: sqlite3.Connection, sql: str, params: tuple[object, ...], values: str | None = None
) -> int:
    """Run one DELETE in its own transaction; rows deleted, or the ``values`` query's sum.

    ``values``: for ``frames``, a query (same parameters) of the values the rows hold,
    run first in the same transaction, so drop counts stay in values, not frames.
    """
    con.execute("BEGIN IMMEDIATE")
    try:
        held = int(con.execute(values, params).fetchone()[0] or 0) if values else 0
        cur = con.execute(sql, params)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return held if values and cur.rowcount > 0 else max(cur.rowcount, 0)


def _values_of(table: str, where: str = "", order: str = "rowid") -> str | None:
    """The query of the values the rows of :func:`_oldest_chunk` hold (frames only)."""
    if table != "frames":
        return None
    cond = f"WHERE {where}" if where else ""
    return f"SELECT sum(n) FROM (SELECT n FROM frames {cond} ORDER BY {order} LIMIT ?)"  # noqa: S608


def prune_by_age(
    con: sqlite3.Connection, config: StorageConfig, now: float, expired: DropCounts
) -> int:
    """Delete rows older than their retention (counted in ``expired``); returns rows deleted.

    Readings, frames and the sample journal are cut at the first rowid whose ``ts``
    reaches the cutoff (binary search, see :func:`first_id_at`), in chunks so no
    transaction grows large.
    """
    total = 0
    # The sample journal (edge_agent.buffer.journal) lives as long as the intervals.
    # Frames are counted in values under "readings", like the rows of schema < 5.
    for key, table, hours in (
        ("readings", "readings", config.readings_retention_h),
        ("readings", "frames", config.readings_retention_h),
        ("samples", "samples", config.events_retention_h),
    ):
        boundary = first_id_at(con, table, now - hours * HOUR_S)
        if boundary is not None and table == "frames":
            # Frames unsent telemetry rows refer to stay (edge_agent.buffer.telerefs).
            floor = referenced_floor(con)
            boundary = boundary if floor is None else min(boundary, floor + 1)
        while boundary is not None:
            params = (boundary, CHUNK_ROWS)
            before = con.total_changes
            n = _delete(
                con,
                _oldest_chunk(table, "id < ?", "id"),
                params,
                _values_of(table, "id < ?", "id"),
            )
            if n:
                expired[key] += n
                total += n
            if con.total_changes - before < CHUNK_ROWS:
                break
    steps = (
        ("comms_events", "DELETE FROM comms_events WHERE ts < ?", config.events_retention_h),
        (
            "intervals",
            "DELETE FROM intervals WHERE coalesce(end, start) < ?",
            config.events_retention_h,
        ),
        (
            "kpi_records",
            "DELETE FROM kpi_records WHERE published IS NOT NULL AND created < ?",
            config.summaries_retention_h,
        ),
        (
            "stop_events",
            "DELETE FROM stop_events WHERE published IS NOT NULL AND created < ?",
            config.summaries_retention_h,
        ),
        (
            # Chained records kept for evidence bundles (edge_agent.evidence), once published.
            "evidence",
            "DELETE FROM evidence WHERE created < ? AND seq NOT IN (SELECT seq FROM outbox)",
            config.summaries_retention_h,
        ),
    )
    for key, sql, hours in steps:
        n = _delete(con, sql, (now - hours * HOUR_S,))
        if n:
            expired[key] += n
            total += n
    return total


def first_id_at(con: sqlite3.Connection, table: str, ts: float) -> int | None:
    """Smallest rowid whose ``ts`` is >= ``ts``, assuming ``ts`` grows with rowid.

    Rows are appended in arrival order and drivers stamp ``ts`` on arrival, so this
    holds up to small disorder (and wall-clock steps, where the cut is approximate).
    About log2(rows) indexed look-ups; returns None for an empty table and
    ``max(rowid) + 1`` when every row is older.
    """
    # Two scalar subqueries, not ``SELECT min(rowid), max(rowid)``: SQLite answers a lone
    # min() or max() from the b-tree's edge, but both in one SELECT scan the whole table
    # (81 ms at 1.2 M readings, growing with the buffer; issue 20).
    low, high = con.execute(
        f"SELECT (SELECT min(rowid) FROM {table}), (SELECT max(rowid) FROM {table})"  # noqa: S608
    ).fetchone()
    if low is None:
        return None
    lo, hi = int(low), int(high) + 1
    probe = f"SELECT rowid, ts FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1"  # noqa: S608
    while lo < hi:
        mid = (lo + hi) // 2
        row = con.execute(probe, (mid,)).fetchone()
        if row is None:
            hi = mid
        elif row[1] < ts:
            lo = int(row[0]) + 1
        else:
            hi = mid
    return lo


def _oldest_chunk(table: str, where: str = "", order: str = "rowid") -> str:
    cond = f"WHERE {where}" if where else ""
    return (
        f"DELETE FROM {table} WHERE rowid IN "  # noqa: S608 - fixed identifiers only
        f"(SELECT rowid FROM {table} {cond} ORDER BY {order} LIMIT ?)"
    )


def _outbox_kinds(con: sqlite3.Connection, where: str, limit: int) -> Counter[str]:
    rows = con.execute(
        f"SELECT kind, count(*) FROM (SELECT kind FROM outbox WHERE {where} "  # noqa: S608
        "ORDER BY seq LIMIT ?) GROUP BY kind",
        (limit,),
    ).fetchall()
    return Counter({str(kind): int(n) for kind, n in rows})


def _evictable_priorities(con: sqlite3.Connection) -> list[int]:
    """Priorities of unpublished rows that may be evicted, least important first."""
    rows = con.execute(
        "SELECT DISTINCT priority FROM outbox WHERE priority > ? ORDER BY priority DESC",
        (int(Priority.HIGH),),
    ).fetchall()
    return [int(r[0]) for r in rows]


# Rows of these kinds are never evicted, whatever priority they were given.
_PROTECTED = "kind NOT IN ({})".format(
    ", ".join(f"'{k.value}'" for k in MessageKind if not k.evictable)
)


# An outbox row of a "so far" KPI record (``final`` false) whose record now points at a
# newer row (kpi_records keeps the latest seq per record_key).
_SUPERSEDED = (
    "kind = 'kpi' AND record_key IS NOT NULL AND json_extract(data, '$.final') = 0 "
    "AND seq < (SELECT r.seq FROM kpi_records r WHERE r.record_key = outbox.record_key)"
)
#: Drop-count key of superseded so-far KPI rows evicted from the outbox (not a loss).
SUPERSEDED_KEY = "superseded:kpi"


def prune_to_budget(con: sqlite3.Connection, target_pages: int, drops: DropCounts) -> bool:
    """Delete rows in eviction order until used pages <= ``target_pages``.

    Returns:
        True when the target was reached, False when only never-evicted rows remain.
    """
    floor = referenced_floor(con)
    spare = "" if floor is None else f"id <= {int(floor)}"
    steps: list[tuple[str, str, str, str, bool]] = [
        ("readings", "readings", "", "id", False),
        # Frames unsent telemetry rows refer to go with those rows (below).
        ("readings", "frames", spare, "id", False),
        # Unpublished "so far" KPI rows a newer row of the same record replaced: the
        # newer one carries everything they said (counted, not a loss).
        (SUPERSEDED_KEY, "outbox", _SUPERSEDED, "seq", False),
        ("samples", "samples", "", "id", False),
        ("kpi_records", "kpi_records", "published IS NOT NULL", "created", False),
        ("stop_events", "stop_events", "published IS NOT NULL", "created", False),
        ("evidence", "evidence", "seq NOT IN (SELECT seq FROM outbox)", "seq", False),
        ("comms_events", "comms_events", "", "id", False),
    ]
    for p in _evictable_priorities(con):
        steps.append(("outbox", "outbox", f"priority = {p} AND {_PROTECTED}", "seq", True))
        if spare and p == Priority.LOW:
            steps.append(("readings", "frames", "", "id", False))
    steps.append(("intervals", "intervals", "", "id", False))
    for key, table, where, order, is_outbox in steps:
        while page_usage(con).used > target_pages:
            kinds = _outbox_kinds(con, where, CHUNK_ROWS) if is_outbox else None
            before = con.total_changes
            limit = FRAME_CHUNK_ROWS if table == "frames" else CHUNK_ROWS
            n = _delete(
                con,
                _oldest_chunk(table, where, order),
                (limit,),
                _values_of(table, where, order),
            )
            if con.total_changes == before:
                break
            if kinds is not None:
                for kind, count in kinds.items():
                    drops[f"outbox:{kind}"] += count
            else:
                drops[key] += n
        if page_usage(con).used <= target_pages:
            return True
    return page_usage(con).used <= target_pages


def release_free_pages(con: sqlite3.Connection, max_pages: int) -> None:
    """Give freelist pages back to the filesystem (incremental vacuum, then checkpoint).

    ``executescript`` is required: ``execute("PRAGMA incremental_vacuum(N)")`` frees
    only one page because the module steps the statement once.
    """
    con.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
