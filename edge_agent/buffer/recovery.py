"""What the buffer finds about its numbering when it opens, and what it reports as lost.

:func:`reconcile` runs once per open, on the writer connection, before anything
else is written. It compares the database's outbox counter and epoch with the
sequence ledger (:mod:`.sequence`) and, when the database was just replaced, with
whatever the moved-aside file still lets us read (:func:`inspect_moved`). Then, in
one transaction, it:

* sets the outbox counter so that the next seq is above every seq ever handed out
  in this epoch: numbers are **never reused** within ``(agent, epoch)``;
* keeps the epoch, unless nothing is left that knows the previous numbering (the
  database and the ledger both lost, the moved file unreadable): then a new epoch
  starts at seq 1, and the envelope's ``epoch`` tells consumers;
* when messages were lost, stores a :class:`GapReport` under :data:`GAPS_KEY` in
  the ``state`` table; the uplink publishes it as a ``gap`` message and deletes it
  in the same transaction (:meth:`edge_agent.buffer.Buffer.publish_gaps`).

Three losses are recognised: ``database_corrupt`` (the file failed its check and
was moved aside), ``database_missing`` (no database, but the ledger shows one
existed) and ``database_rolled_back`` (the database opened fine but holds fewer
commits than the ledger recorded, e.g. a write-ahead log that was not valid and
that SQLite silently discarded). A first start (no database, no ledger) is not a
loss. This module does not publish, and reads the moved file only (read-only).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.buffer import outbox
from edge_agent.buffer.sequence import LedgerRecord, new_epoch

log = logging.getLogger(__name__)

EPOCH_KEY = "outbox:epoch"
GAPS_KEY = "outbox:gaps"
# Pending gap reports kept at most (each open adds at most one).
GAPS_MAX = 100

_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WAL_VERSION = 3007000


def iso_utc(ts: float | None) -> str | None:
    """UNIX seconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (None stays None)."""
    if ts is None:
        return None
    millis = round(ts * 1000)
    whole, frac = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac:03d}Z"


def inspect_wal(database: Path) -> str | None:
    """Why SQLite will discard the database's write-ahead log, or None when it looks valid.

    Must run before the database is opened (opening discards an invalid log). Only
    the 32-byte header is checked: magic number, format version and checksum.
    """
    wal = database.with_name(database.name + "-wal")
    try:
        with open(wal, "rb") as fh:
            header = fh.read(32)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"write-ahead log unreadable: {exc.strerror or exc}"
    if not header:
        return None
    if len(header) < 32:
        return f"write-ahead log truncated to {len(header)} bytes"
    magic, version = struct.unpack(">II", header[:8])
    if magic not in _WAL_MAGIC or version != _WAL_VERSION:
        return "write-ahead log header is not valid (not written by SQLite)"
    big_endian = magic & 1
    s1, s2 = _wal_checksum(header[:24], big_endian)
    if (s1, s2) != struct.unpack(">II", header[24:32]):
        return "write-ahead log header checksum does not match"
    return None


def _wal_checksum(data: bytes, big_endian: int) -> tuple[int, int]:
    """SQLite's WAL checksum over 8-byte chunks (https://sqlite.org/fileformat.html#walformat)."""
    fmt = ">" if big_endian else "<"
    words = struct.unpack(f"{fmt}{len(data) // 4}I", data)
    s1 = s2 = 0
    for i in range(0, len(words), 2):
        s1 = (s1 + words[i] + s2) & 0xFFFFFFFF
        s2 = (s2 + words[i + 1] + s1) & 0xFFFFFFFF
    return s1, s2


@dataclass(frozen=True, slots=True)
class MovedInfo:
    """What could still be read from a database that was moved aside (None: unreadable)."""

    epoch: str | None = None
    high_water: int | None = None
    unacked: int | None = None
    unacked_min: int | None = None
    oldest: float | None = None
    newest: float | None = None


def inspect_moved(path: Path) -> MovedInfo:
    """Read the epoch, counter and unacknowledged outbox rows of a moved-aside file.

    Best effort, read-only: every query that fails leaves its fields None.
    """
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error:
        return MovedInfo()
    fields: dict[str, Any] = {}
    try:
        fields["epoch"] = _read_epoch(con)
        try:
            row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
            fields["high_water"] = int(row[0]) if row else 0
        except sqlite3.Error:
            pass
        try:
            n, low, oldest, newest = con.execute(
                "SELECT count(*), min(seq), min(created), max(created) FROM outbox"
            ).fetchone()
            fields.update(unacked=int(n), unacked_min=low, oldest=oldest, newest=newest)
        except sqlite3.Error:
            pass
    finally:
        con.close()
    return MovedInfo(**fields)


def _read_epoch(con: sqlite3.Connection) -> str | None:
    try:
        row = con.execute("SELECT value FROM state WHERE key = ?", (EPOCH_KEY,)).fetchone()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    try:
        value = json.loads(row[0]).get("epoch")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _newest_commit(con: sqlite3.Connection) -> float | None:
    """Wall time of the newest message or record still in the database (None: none)."""
    times = [
        con.execute("SELECT max(created) FROM outbox").fetchone()[0],
        con.execute("SELECT max(created) FROM kpi_records").fetchone()[0],
        con.execute("SELECT max(created) FROM stop_events").fetchone()[0],
    ]
    known = [float(t) for t in times if t is not None]
    return max(known) if known else None


@dataclass(frozen=True, slots=True, kw_only=True)
class GapReport:
    """Messages lost with the database (the ``data`` of a ``gap`` message, see the schema)."""

    reason: str
    detail: str
    seq_from: int | None
    seq_to: int | None
    lost_messages: int | None
    lost_from: float | None
    lost_to: float | None
    epoch_restarted: bool
    moved_to: str | None
    detected: float

    def as_data(self) -> dict[str, Any]:
        """The message ``data`` (instants as ISO 8601 UTC strings)."""
        return {
            "reason": self.reason,
            "detail": self.detail,
            "seq_from": self.seq_from,
            "seq_to": self.seq_to,
            "lost_messages": self.lost_messages,
            "from": iso_utc(self.lost_from),
            "to": iso_utc(self.lost_to),
            "epoch_restarted": self.epoch_restarted,
            "moved_to": self.moved_to,
            "detected": iso_utc(self.detected),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :func:`reconcile` decided: the epoch, the ledger to write, the loss found."""

    epoch: str
    ledger: LedgerRecord
    gap: GapReport | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """Everything known before the database was opened."""

    intact: bool
    ledger: LedgerRecord | None
    ledger_problem: str | None = None
    moved: Path | None = None
    moved_info: MovedInfo | None = None
    wal_note: str | None = None


def decide(
    found: Found, db_epoch: str | None, db_high: int, newest: float | None, now: float
) -> tuple[str, int, GapReport | None]:
    """Pure decision: ``(epoch, counter floor, gap report or None)``.

    ``db_epoch``/``db_high`` are the opened database's epoch and outbox counter,
    ``newest`` the time of its newest message or record.
    """
    ledger = found.ledger
    if found.intact:
        epoch = db_epoch or (ledger.epoch if ledger is not None else new_epoch())
        if ledger is None or ledger.epoch != epoch:
            # No ledger (first start of this version, or deleted) or another numbering's
            # ledger: the database is intact, so its counter is the truth; never go below
            # a number the ledger says was handed out.
            floor = db_high if ledger is None else max(db_high, ledger.reserved)
            return epoch, floor, None
        if ledger.high_water <= db_high:
            return epoch, db_high, None
        detail = found.wal_note or "the database holds fewer commits than the ledger recorded"
        gap = GapReport(
            reason="database_rolled_back",
            detail=f"{detail}; seq {db_high + 1}-{ledger.high_water} were committed and lost",
            seq_from=db_high + 1,
            seq_to=ledger.reserved,
            lost_messages=ledger.high_water - db_high,
            lost_from=newest,
            lost_to=ledger.updated,
            epoch_restarted=False,
            moved_to=None,
            detected=now,
        )
        return epoch, ledger.reserved, gap
    # A fresh database: new file, or the old one was moved aside.
    info = found.moved_info or MovedInfo()
    moved_to = str(found.moved) if found.moved is not None else None
    reason = "database_corrupt" if found.moved is not None else "database_missing"
    if ledger is None and found.moved is None and not found.ledger_problem:
        return new_epoch(), 0, None  # first start: nothing was lost
    lost: int | None = info.unacked
    if ledger is not None:
        epoch, floor, restarted = ledger.epoch, ledger.reserved, False
        if info.high_water is not None and info.epoch in (None, ledger.epoch):
            floor = max(floor, info.high_water)
            if lost is not None:
                lost += max(0, ledger.high_water - info.high_water)
        else:
            lost = None
        newest_known: float | None = max(
            (t for t in (info.newest, ledger.updated) if t is not None), default=None
        )
    elif info.high_water is not None:
        epoch, floor, restarted = info.epoch or new_epoch(), info.high_water, info.epoch is None
        newest_known = info.newest
    else:
        epoch, floor, restarted = new_epoch(), 0, True
        newest_known = None
    if restarted:
        detail = "numbering restarted in a new epoch: the previous numbering is unknown"
    else:
        detail = f"numbering continues above {floor}"
    if found.ledger_problem:
        detail += f"; sequence ledger unreadable: {found.ledger_problem}"
    gap = GapReport(
        reason=reason,
        detail=detail,
        seq_from=info.unacked_min if not restarted else None,
        seq_to=floor if floor and not restarted else None,
        lost_messages=lost,
        lost_from=info.oldest,
        lost_to=newest_known,
        epoch_restarted=restarted,
        moved_to=moved_to,
        detected=now,
    )
    return epoch, floor, gap


def reconcile(con: sqlite3.Connection, found: Found, *, now: float) -> Outcome:
    """Apply :func:`decide` to the opened database in one transaction (see module doc)."""
    db_epoch = _read_epoch(con)
    _count, _low, db_high = outbox.bounds(con)
    epoch, floor, gap = decide(found, db_epoch, db_high, _newest_commit(con), now)
    con.execute("BEGIN IMMEDIATE")
    try:
        if floor > db_high:
            changed = con.execute(
                "UPDATE sqlite_sequence SET seq = ? WHERE name = 'outbox'", (floor,)
            ).rowcount
            if not changed:
                con.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('outbox', ?)", (floor,))
        if epoch != db_epoch:
            _put(con, EPOCH_KEY, {"epoch": epoch}, now)
        if gap is not None:
            row = con.execute("SELECT value FROM state WHERE key = ?", (GAPS_KEY,)).fetchone()
            pending = json.loads(row[0]) if row else []
            pending = [*pending, gap.as_data()][-GAPS_MAX:]
            _put(con, GAPS_KEY, pending, now)
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    high = max(floor, db_high)
    ledger = found.ledger
    reserved = high if ledger is None or ledger.epoch != epoch else max(high, ledger.reserved)
    updated = ledger.updated if ledger is not None and ledger.epoch == epoch else now
    if gap is not None:
        log.error(
            "Buffer lost outgoing messages, reporting a gap: reason=%s seq_from=%s seq_to=%s "
            "lost_messages=%s epoch=%s detail=%r",
            gap.reason,
            gap.seq_from,
            gap.seq_to,
            gap.lost_messages,
            epoch,
            gap.detail,
        )
    elif found.ledger_problem:
        log.warning(
            "Sequence ledger unreadable, rebuilt from the database: problem=%r",
            found.ledger_problem,
        )
    return Outcome(
        epoch=epoch,
        ledger=LedgerRecord(epoch=epoch, high_water=high, reserved=reserved, updated=updated),
        gap=gap,
    )


def _put(con: sqlite3.Connection, key: str, value: Any, now: float) -> None:
    con.execute(
        "INSERT INTO state(key, value, updated) VALUES (?, ?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated",
        (key, json.dumps(value, separators=(",", ":")), now),
    )
