"""Opening the buffer database: pragmas, size cap, forward migrations, corruption handling.

:func:`open_database` returns a ready ``sqlite3.Connection`` (autocommit mode,
WAL, incremental auto-vacuum, ``max_page_count`` set from the budget) with the
schema at :data:`SCHEMA_VERSION`. A file that fails ``PRAGMA quick_check`` or is
not a database is renamed ``<name>.corrupt-<UTC timestamp>`` (with its ``-wal``
and ``-shm``) and a fresh database is created; this is logged at ERROR because
the data in it is no longer forwarded (salvage offline with ``sqlite3 .dump``).

Migrations only move forward: each step is a list of statements run in one
transaction that also bumps ``PRAGMA user_version``. A database newer than this
code is refused (never downgraded). Only the indexes the calculator, the uplink,
retention and export need exist. This module holds no state and starts no thread.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from edge_agent.errors import StorageFull

log = logging.getLogger(__name__)

PAGE_SIZE = 4096
SCHEMA_VERSION = 5

# Stored codes of Quality in readings.quality (stable: part of the file format).
QUALITY_CODES: dict[str, int] = {"good": 0, "bad": 1, "stale": 2}
QUALITY_NAMES: dict[int, str] = {code: name for name, code in QUALITY_CODES.items()}

# Version n -> statements that bring version n-1 to n.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        # One row per (device, tag): readings refer to it by id, which keeps the hot
        # table narrow (about 20 % faster inserts, far fewer bytes on an SD card).
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            tag TEXT NOT NULL,
            UNIQUE (device, tag)
        )""",
        # Raw readings: append-only, pruned oldest first (rowid order == arrival order).
        # No index on ts (it costs a third of the insert rate): time ranges are found by
        # binary search over rowid, since drivers stamp ts on arrival (retention.first_id_at).
        # quality: 0 good, 1 bad, 2 stale (QUALITY_CODES); reason NULL when empty.
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            series INTEGER NOT NULL,
            value,
            quality INTEGER NOT NULL,
            reason TEXT,
            mono REAL NOT NULL,
            source_ts REAL
        )""",
        """CREATE TABLE comms_events (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            device TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            mono REAL NOT NULL
        )""",
        "CREATE INDEX comms_events_ts ON comms_events(ts)",
        # Machine state intervals as the calculator produced them (JSON), start/end extracted.
        """CREATE TABLE intervals (
            id INTEGER PRIMARY KEY,
            machine TEXT NOT NULL,
            start REAL,
            end REAL,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX intervals_machine_start ON intervals(machine, start)",
        # Summaries keyed by machine+window+revision (record_key); seq links to the outbox.
        """CREATE TABLE kpi_records (
            record_key TEXT PRIMARY KEY,
            created REAL NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            published REAL
        )""",
        "CREATE INDEX kpi_records_created ON kpi_records(created)",
        # The ack path marks records published by seq.
        "CREATE INDEX kpi_records_seq ON kpi_records(seq)",
        """CREATE TABLE stop_events (
            record_key TEXT PRIMARY KEY,
            created REAL NOT NULL,
            seq INTEGER NOT NULL,
            data TEXT NOT NULL,
            published REAL
        )""",
        "CREATE INDEX stop_events_created ON stop_events(created)",
        "CREATE INDEX stop_events_seq ON stop_events(seq)",
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated REAL NOT NULL)",
        # AUTOINCREMENT: a seq is never reused, even after every row was acknowledged.
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            priority INTEGER NOT NULL,
            topic TEXT NOT NULL,
            data TEXT NOT NULL,
            created REAL NOT NULL,
            retain INTEGER NOT NULL DEFAULT 0,
            record_key TEXT
        )""",
        # Eviction under the budget walks lowest priority, oldest first.
        "CREATE INDEX outbox_priority_seq ON outbox(priority, seq)",
    ),
    # Reserved for the sample journal of issue 13 (wt/port13); the journal is migration 4
    # (wt/replay13). An empty step only bumps user_version.
    2: (),
    # Evidence (edge_agent.evidence): the proof object of a signed message, published with
    # it (so a re-send is byte-identical), and every chained record as published (the
    # envelope's exact text), kept for evidence bundles after its outbox row is acknowledged.
    3: (
        "ALTER TABLE outbox ADD COLUMN proof TEXT",
        """CREATE TABLE evidence (
            seq INTEGER PRIMARY KEY,
            epoch TEXT NOT NULL,
            kind TEXT NOT NULL,
            created REAL NOT NULL,
            machine TEXT,
            envelope TEXT NOT NULL
        )""",
        "CREATE INDEX evidence_created ON evidence(created)",
    ),
    # The sample journal (issue 13): every sample a machine's calculator was fed, in the
    # order it was fed (n: per machine, counted in the calculator state; ts: the sample
    # time), as the
    # ``edge-agent replay`` input object (JSON text). Export, replay and evidence bundles
    # read it; a restart truncates it to the restored state (see reporting.journal).
    4: (
        """CREATE TABLE samples (
            id INTEGER PRIMARY KEY,
            machine TEXT NOT NULL,
            n INTEGER NOT NULL,
            ts REAL NOT NULL,
            data TEXT NOT NULL
        )""",
        # Retention cuts by rowid (arrival order, like readings); export reads a machine's
        # time range; a restart cuts a machine's journal back by n.
        "CREATE INDEX samples_machine_n ON samples(machine, n)",
        "CREATE INDEX samples_machine_ts ON samples(machine, ts)",
    ),
    # Raw values as polled (issue 20): one frames row per block read / poll batch
    # instead of one readings row per value (edge_agent.buffer.blocks, .frames). A
    # layout is the ordered tag list of a device's poll (JSON text), stored once.
    # frames: append-only like readings (rowid order == arrival order, no ts index);
    # n: values held (retention counts evicted values, not frames); enc: the codec's
    # encoding and flags; data: the encoded values.
    # Existing readings rows stay readable (export merges both by time).
    5: (
        """CREATE TABLE layouts (
            id INTEGER PRIMARY KEY,
            device TEXT NOT NULL,
            tags TEXT NOT NULL,
            UNIQUE (device, tags)
        )""",
        """CREATE TABLE frames (
            id INTEGER PRIMARY KEY,
            ts REAL NOT NULL,
            layout INTEGER NOT NULL,
            mono REAL NOT NULL,
            n INTEGER NOT NULL,
            enc INTEGER NOT NULL,
            data BLOB NOT NULL
        )""",
    ),
}


_CORRUPT_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


class CorruptDatabase(Exception):
    """The file is not a usable SQLite database."""


@dataclass(frozen=True, slots=True)
class SizePlan:
    """How the byte budget is split between the main file (page cap) and the WAL."""

    max_page_count: int
    wal_bytes: int
    wal_autocheckpoint_pages: int


def plan_size(max_bytes: int, page_size: int = PAGE_SIZE) -> SizePlan:
    """Split the budget: the WAL is outside ``max_page_count``, so reserve room for it.

    The WAL is truncated to ``journal_size_limit`` after checkpoints and checkpointed
    every ``wal_autocheckpoint`` pages; a long read transaction (an export) can hold a
    checkpoint back, which is the one case where the file pair may briefly exceed it.
    """
    wal_bytes = max(64 * page_size, min(8 * 1024 * 1024, max_bytes // 8))
    pages = max(16, (max_bytes - wal_bytes) // page_size)
    return SizePlan(
        max_page_count=pages,
        wal_bytes=wal_bytes,
        wal_autocheckpoint_pages=max(16, wal_bytes // page_size // 2),
    )


def connect(path: Path | str, *, read_only: bool = False) -> sqlite3.Connection:
    """A raw connection in autocommit mode (transactions are explicit ``BEGIN``)."""
    if read_only:
        uri = f"file:{Path(path).resolve()}?mode=ro"
        con = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    else:
        con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA busy_timeout=5000")
    return con


def _configure(con: sqlite3.Connection, size: SizePlan) -> None:
    # auto_vacuum only takes effect before the first table is created (fresh file).
    con.execute("PRAGMA auto_vacuum=INCREMENTAL")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(f"PRAGMA journal_size_limit={size.wal_bytes}")
    con.execute(f"PRAGMA wal_autocheckpoint={size.wal_autocheckpoint_pages}")
    # Per connection: every writer connection must set it again.
    con.execute(f"PRAGMA max_page_count={size.max_page_count}")


def _check(con: sqlite3.Connection) -> None:
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(str(exc)) from exc
    if rows != [("ok",)]:
        raise CorruptDatabase("; ".join(str(r[0]) for r in rows[:5]))


def migrate(con: sqlite3.Connection) -> int:
    """Bring the schema forward to :data:`SCHEMA_VERSION`; returns the version found."""
    found = int(con.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise RuntimeError(
            f"buffer schema version {found} is newer than this agent ({SCHEMA_VERSION}); "
            "refusing to downgrade"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[version]:
                con.execute(statement)
            con.execute(f"PRAGMA user_version={version}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return found


def move_aside(path: Path, reason: str) -> Path:
    """Rename a corrupt database (and its WAL/SHM) to ``<name>.corrupt-<UTC timestamp>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    path.rename(target)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    log.error(
        "Buffer database is corrupt, moved aside and starting empty: path=%s moved_to=%s reason=%r",
        path,
        target,
        reason,
    )
    return target


def open_database(path: Path, max_bytes: int) -> tuple[sqlite3.Connection, Path | None]:
    """Open (creating, migrating or replacing a corrupt file) the buffer database.

    Args:
        path: Database file; its directory is created when missing.
        max_bytes: Budget for the database plus WAL.

    Returns:
        The writer connection and, when the old file was corrupt, where it was moved.

    Raises:
        StorageFull: The disk is full even for a fresh, empty database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    size = plan_size(max_bytes)
    moved: Path | None = None
    for attempt in range(2):
        con = connect(path)
        try:
            _configure(con, size)
            _check(con)
            migrate(con)
        except (CorruptDatabase, sqlite3.DatabaseError) as exc:
            con.close()
            name = getattr(exc, "sqlite_errorname", "")
            if name == "SQLITE_FULL":
                raise StorageFull(f"disk full while opening the buffer at {path}") from exc
            # Only corruption is handled by replacing the file; "locked", permissions or
            # I/O errors must surface, never cost the operator their data.
            corrupt = isinstance(exc, CorruptDatabase) or name in _CORRUPT_CODES
            if not corrupt or attempt == 1 or not path.exists():
                raise
            moved = move_aside(path, str(exc))
            continue
        return con, moved
    raise AssertionError("unreachable")  # pragma: no cover
