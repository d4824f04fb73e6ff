"""Sequence numbers are never reused: the ledger beside the database, epochs and gap reports.

Component tests on real files (the buffer opened and closed in-process; the crash
tests that kill a real process are in tests/integration/test_chaos_seq.py).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.buffer.recovery import GAPS_KEY, Found, MovedInfo, decide, inspect_wal
from edge_agent.buffer.sequence import (
    RECORD_BYTES,
    RESERVE_BLOCK,
    LedgerError,
    LedgerRecord,
    decode,
    encode,
    ledger_path,
    read_ledger,
)

from .helpers import readings


@pytest.fixture
def config(tmp_path: Path) -> StorageConfig:
    return StorageConfig(path=tmp_path / "state" / "buffer.db", flush_interval_ms=20)


async def publish(buf: Buffer, n: int) -> list[int]:
    return [await buf.publish("stop", "t", {"n": i}, priority=Priority.HIGH) for i in range(n)]


def pending_gaps(path: Path) -> list[dict[str, object]]:
    con = sqlite3.connect(path)
    try:
        row = con.execute("SELECT value FROM state WHERE key = ?", (GAPS_KEY,)).fetchone()
    finally:
        con.close()
    return json.loads(row[0]) if row else []


def test_ledger_record_round_trips_at_a_fixed_width() -> None:
    """A record encodes to RECORD_BYTES whatever its numbers, and decodes back unchanged."""
    for record in (
        LedgerRecord(epoch="0a1b2c3d", high_water=0, reserved=0, updated=0.0),
        LedgerRecord(epoch="ffffffff", high_water=2**53, reserved=2**53 + 5, updated=1.8e9),
    ):
        raw = encode(record)
        assert len(raw) == RECORD_BYTES
        assert decode(raw) == record


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * RECORD_BYTES,
        b'{"format":1,"epoch":"XYZ","high_water":1,"reserved":2,"updated":0}',
        b'{"format":1,"epoch":"0a1b2c3d","high_water":5,"reserved":2,"updated":0}',
        b'{"format":1,"epoch":"0a1b2c3d","high_water":true,"reserved":2,"updated":0}',
        b'{"format":2,"epoch":"0a1b2c3d","high_water":1,"reserved":2,"updated":0}',
    ],
)
def test_a_damaged_ledger_is_reported_never_guessed(raw: bytes) -> None:
    """Empty, zeroed, malformed or inconsistent records raise LedgerError."""
    with pytest.raises(LedgerError):
        decode(raw)


async def test_the_reservation_is_on_disk_before_the_seqs_it_covers(
    config: StorageConfig,
) -> None:
    """The ledger reserves a block ahead; the exact high-water mark follows every commit."""
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        seqs = await publish(buf, 3)
        record = read_ledger(ledger_path(config.path))
        assert record is not None
        assert record.epoch == buf.epoch
        assert record.high_water == seqs[-1] == 3
        assert record.reserved >= RESERVE_BLOCK  # reserved ahead, before the first commit
    finally:
        await buf.close()
    closed = read_ledger(ledger_path(config.path))
    assert closed is not None
    assert (closed.high_water, closed.reserved) == (3, 3)  # a clean close reserves nothing


async def test_a_normal_restart_keeps_the_epoch_and_continues_the_numbering(
    config: StorageConfig,
) -> None:
    """Restarting on an intact database: same epoch, next seq, no gap report."""
    buf = Buffer(config, "gw1")
    await buf.open()
    first = await publish(buf, 5)
    epoch = buf.epoch
    await buf.close()
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert buf.epoch == epoch
        assert await publish(buf, 1) == [first[-1] + 1]
        assert buf.recovered is None
        assert await buf.publish_gaps("t/gap") == []
    finally:
        await buf.close()


async def test_a_corrupt_database_moved_aside_keeps_the_numbering_and_reports_a_gap(
    config: StorageConfig,
) -> None:
    """Seq continues above everything handed out; the gap names the lost unacknowledged rows."""
    buf = Buffer(config, "gw1")
    await buf.open()
    seqs = await publish(buf, 40)
    await buf.ack(seqs[:30])  # 10 stay unacknowledged
    buf.add_readings(readings(20_000))
    epoch = buf.epoch
    await buf.close()
    con = sqlite3.connect(config.path)
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with open(config.path, "r+b") as fh:  # damage among the readings: quick_check fails
        for page in range(pages // 2, pages // 2 + 4):
            fh.seek(page * 4096)
            fh.write(b"\xa5" * 4096)
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert buf.moved_aside is not None
        assert buf.epoch == epoch
        new = await publish(buf, 1)
        assert new[0] > 40
        gap = buf.recovered
        assert gap is not None
        assert gap["reason"] == "database_corrupt"
        assert gap["moved_to"] == str(buf.moved_aside)
        # The moved file was still readable: exactly the unacknowledged rows are lost.
        assert (gap["seq_from"], gap["lost_messages"]) == (31, 10)
        assert gap["seq_to"] is not None
        assert 40 <= gap["seq_to"] < new[0]
        assert gap["epoch_restarted"] is False
        assert pending_gaps(config.path) == [gap]
        gap_seqs = await buf.publish_gaps("t/gap")
        assert len(gap_seqs) == 1
        assert gap_seqs[0] > new[0]
        assert pending_gaps(config.path) == []
        rows = await buf.fetch_outbox(after=new[0], limit=10)
        assert [(r.kind, json.loads(r.data)) for r in rows] == [("gap", gap)]
    finally:
        await buf.close()


async def test_an_unreadable_database_keeps_the_numbering_through_the_ledger(
    config: StorageConfig,
) -> None:
    """A file that is not a database any more: the ledger alone keeps epoch and numbering."""
    buf = Buffer(config, "gw1")
    await buf.open()
    await publish(buf, 12)
    epoch = buf.epoch
    await buf.close()
    with open(config.path, "r+b") as fh:  # the header: "file is not a database"
        fh.write(b"garbage!" * 16)
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert buf.epoch == epoch
        assert (await publish(buf, 1))[0] > 12
        gap = buf.recovered
        assert gap is not None
        assert gap["reason"] == "database_corrupt"
        assert (gap["seq_from"], gap["seq_to"], gap["lost_messages"]) == (None, 12, None)
    finally:
        await buf.close()


async def test_losing_the_ledger_alone_costs_nothing(config: StorageConfig) -> None:
    """An intact database rebuilds a deleted or unreadable ledger: same epoch, no gap."""
    buf = Buffer(config, "gw1")
    await buf.open()
    await publish(buf, 4)
    epoch = buf.epoch
    await buf.close()
    ledger_path(config.path).write_bytes(b"\x00" * 7)
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert (buf.epoch, buf.recovered) == (epoch, None)
        assert await publish(buf, 1) == [5]
        record = read_ledger(ledger_path(config.path))
        assert record is not None
        assert record.epoch == epoch
    finally:
        await buf.close()


async def test_database_and_ledger_both_lost_start_a_new_epoch(config: StorageConfig) -> None:
    """Nothing knows the old numbering: seq restarts at 1 under a different epoch."""
    buf = Buffer(config, "gw1")
    await buf.open()
    await publish(buf, 4)
    epoch = buf.epoch
    await buf.close()
    config.path.unlink()
    ledger_path(config.path).unlink()
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert buf.epoch != epoch
        assert await publish(buf, 1) == [1]
        assert buf.recovered is None  # indistinguishable from a first start
    finally:
        await buf.close()


async def test_a_deleted_database_with_its_ledger_continues_and_reports(
    config: StorageConfig,
) -> None:
    """The database file deleted, the ledger kept: same epoch, seq above, gap 'database_missing'."""
    buf = Buffer(config, "gw1")
    await buf.open()
    await publish(buf, 7)
    epoch = buf.epoch
    await buf.close()
    for suffix in ("", "-wal", "-shm"):
        config.path.with_name(config.path.name + suffix).unlink(missing_ok=True)
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert buf.epoch == epoch
        assert (await publish(buf, 1))[0] == 8
        gap = buf.recovered
        assert gap is not None
        assert (gap["reason"], gap["seq_to"], gap["lost_messages"]) == ("database_missing", 7, None)
    finally:
        await buf.close()


async def test_a_database_written_before_epochs_gets_one_without_a_gap(
    config: StorageConfig,
) -> None:
    """Upgrading: a database of an agent without ledger keeps its numbering, gains an epoch."""
    buf = Buffer(config, "gw1")
    await buf.open()
    await publish(buf, 3)
    await buf.close()
    ledger_path(config.path).unlink()
    con = sqlite3.connect(config.path)
    con.execute("DELETE FROM state")
    con.commit()
    con.close()
    buf = Buffer(config, "gw1")
    await buf.open()
    try:
        assert len(buf.epoch) == 8
        assert buf.recovered is None
        assert await publish(buf, 1) == [4]
    finally:
        await buf.close()


def test_decide_rolled_back_database_never_reuses_and_counts_exactly() -> None:
    """The ledger ahead of an intact database: the lost range is exact, numbering skips it."""
    ledger = LedgerRecord(epoch="0a1b2c3d", high_water=460, reserved=1381, updated=100.0)
    found = Found(intact=True, ledger=ledger, wal_note="write-ahead log header is not valid")
    epoch, floor, gap = decide(found, "0a1b2c3d", 381, 90.0, now=200.0)
    assert (epoch, floor) == ("0a1b2c3d", 1381)
    assert gap is not None
    assert (gap.reason, gap.seq_from, gap.seq_to, gap.lost_messages) == (
        "database_rolled_back",
        382,
        1381,
        79,
    )
    assert (gap.lost_from, gap.lost_to) == (90.0, 100.0)
    assert "write-ahead log" in gap.detail


def test_decide_unreadable_moved_file_without_ledger_restarts_the_epoch() -> None:
    """A corrupt database, no ledger, nothing readable: new epoch, seq from 1, say so."""
    found = Found(
        intact=False, ledger=None, moved=Path("/x/buffer.db.corrupt-1"), moved_info=MovedInfo()
    )
    _epoch, floor, gap = decide(found, None, 0, None, now=1.0)
    assert floor == 0
    assert gap is not None
    assert gap.epoch_restarted is True
    assert (gap.seq_from, gap.seq_to, gap.lost_messages) == (None, None, None)


def test_decide_readable_moved_file_without_ledger_keeps_its_epoch() -> None:
    """No ledger, but the moved file still tells its epoch and counter: continue above it."""
    info = MovedInfo(
        epoch="0a1b2c3d", high_water=50, unacked=5, unacked_min=46, oldest=1.0, newest=2.0
    )
    found = Found(intact=False, ledger=None, moved=Path("/x/b.corrupt"), moved_info=info)
    epoch, floor, gap = decide(found, None, 0, None, now=3.0)
    assert (epoch, floor) == ("0a1b2c3d", 50)
    assert gap is not None
    assert (gap.seq_from, gap.seq_to, gap.lost_messages, gap.epoch_restarted) == (46, 50, 5, False)


def test_a_wal_that_sqlite_would_discard_is_recognised(tmp_path: Path) -> None:
    """A valid WAL header passes; random bytes and a truncated header are named."""
    db = tmp_path / "x.db"
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("CREATE TABLE t(x)")
    con.execute("INSERT INTO t VALUES (1)")
    assert inspect_wal(db) is None
    wal = tmp_path / "x.db-wal"
    data = wal.read_bytes()
    con.close()
    wal.write_bytes(bytes(b ^ 0x5A for b in data))
    assert "not valid" in (inspect_wal(db) or "")
    wal.write_bytes(data[:10])
    assert "truncated" in (inspect_wal(db) or "")
    wal.write_bytes(data[:24] + b"\x00" * 8 + data[32:])
    assert "checksum" in (inspect_wal(db) or "")
