"""Buffer component tests on a real SQLite file: ingest, outbox, state, restart, corruption."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig, blocks
from edge_agent.buffer.schema import SCHEMA_VERSION
from edge_agent.model import CommsEvent, CommsState, Quality, Reading

from .helpers import count, readings, values


@pytest.fixture
def config(tmp_path: Path) -> StorageConfig:
    return StorageConfig(
        path=tmp_path / "state" / "buffer.db", flush_interval_ms=20, flush_rows=500
    )


async def opened(config: StorageConfig) -> Buffer:
    buf = Buffer(config, "gw1")
    await buf.open()
    return buf


async def test_readings_events_intervals_are_committed(config: StorageConfig) -> None:
    """Every queued row reaches the database after flush, with its values intact."""
    buf = await opened(config)
    try:
        buf.add_readings(readings(1200))
        buf.add_readings(
            [
                Reading(device="d", tag="arr", value=[1, 2], ts=1.0, mono=1.0),
                Reading(
                    device="d",
                    tag="bad",
                    value=None,
                    ts=2.0,
                    mono=2.0,
                    quality=Quality.BAD,
                    reason="timeout",
                ),
            ]
        )
        buf.add_comms(
            CommsEvent(device="d", state=CommsState.DOWN, ts=3.0, mono=3.0, reason="timeout")
        )
        buf.add_intervals("press1", [{"start": 10.0, "end": 20.0, "state": "running"}])
        await buf.flush()
        assert values(config.path) == 1202
        assert count(config.path, "comms_events") == 1
        assert count(config.path, "intervals", "machine = 'press1' AND start = 10.0") == 1
        con = sqlite3.connect(config.path)
        everything = blocks.read(con, float("-inf"), float("inf"))
        back = {v.tag: v for v in everything if v.device == "d"}
        assert (back["bad"].value, back["bad"].quality, back["bad"].reason) == (None, 1, "timeout")
        assert back["arr"].value == [1, 2]
        # One layout per device and tag list: plc1's 1200 one-value polls use 7 tags.
        assert con.execute("SELECT count(*) FROM layouts").fetchone()[0] == 9
        con.close()
        assert buf.stats()["written"]["readings"] == 1202
    finally:
        await buf.close()


async def test_rows_commit_without_explicit_flush_within_the_interval(
    config: StorageConfig,
) -> None:
    """A small batch is committed by the writer thread within a bounded delay, no flush() call."""
    buf = await opened(config)
    try:
        buf.add_readings(readings(3))
        for _ in range(100):  # bounded: 100 x 20 ms
            if values(config.path) == 3:
                break
            await __import__("asyncio").sleep(0.02)
        assert values(config.path) == 3
    finally:
        await buf.close()


async def test_full_queue_drops_newest_and_counts(tmp_path: Path) -> None:
    """Beyond queue_max_rows new readings are dropped and counted, never blocking the caller."""
    cfg = StorageConfig(
        path=tmp_path / "b.db", flush_rows=100, queue_max_rows=100, flush_interval_ms=60_000
    )
    buf = await opened(cfg)
    try:
        buf.add_readings(readings(250))  # one call: the thread cannot drain in between
        assert buf.stats()["dropped"]["readings:queue_full"] == 150
        await buf.flush()
        assert values(cfg.path) == 100
    finally:
        await buf.close()


async def test_close_flushes_queued_rows(config: StorageConfig) -> None:
    """close() commits rows still waiting in the queue."""
    cfg = StorageConfig(path=config.path, flush_interval_ms=60_000, flush_rows=10_000)
    buf = await opened(cfg)
    buf.add_readings(readings(10))
    await buf.close()
    assert values(cfg.path) == 10


async def test_outbox_seq_order_ack_and_no_reuse_after_restart(config: StorageConfig) -> None:
    """Seqs increase, fetch is in seq order, ack deletes, seqs are never reused after restart."""
    buf = await opened(config)
    seqs = [
        await buf.publish("health", "t/h", {"i": i}, priority=Priority.MEDIUM) for i in range(5)
    ]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == 5
    rows = await buf.fetch_outbox(after=0, limit=3)
    assert [r.seq for r in rows] == seqs[:3]
    assert [json.loads(r.data)["i"] for r in rows] == [0, 1, 2]
    assert [r.seq for r in await buf.fetch_outbox(after=seqs[3], limit=10)] == [seqs[4]]
    assert await buf.ack(seqs) == 5
    assert await buf.ack(seqs) == 0  # idempotent
    assert buf.backlog == 0
    await buf.close()

    buf = await opened(config)
    try:
        assert buf.last_seq == seqs[-1]
        again = await buf.publish("health", "t/h", {}, priority=Priority.MEDIUM)
        assert again == seqs[-1] + 1
    finally:
        await buf.close()


async def test_kpi_records_are_upserted_and_marked_published(config: StorageConfig) -> None:
    """A new revision replaces the record; ack of its seq marks it published."""
    buf = await opened(config)
    try:
        await buf.publish("kpi", "t/k", {"rev": 0}, priority=Priority.HIGH, record_key="m1|shift|A")
        seq = await buf.publish(
            "kpi", "t/k", {"rev": 1}, priority=Priority.HIGH, record_key="m1|shift|A"
        )
        await buf.publish("stop", "t/s", {"machine": "m1"}, priority=Priority.HIGH)
        assert count(config.path, "kpi_records") == 1
        assert count(config.path, "stop_events") == 1
        await buf.ack([seq])
        con = sqlite3.connect(config.path)
        data, published = con.execute("SELECT data, published FROM kpi_records").fetchone()
        con.close()
        assert json.loads(data) == {"rev": 1}
        assert published is not None
        assert buf.backlog == 2
    finally:
        await buf.close()


async def test_publish_refuses_nan(config: StorageConfig) -> None:
    """NaN is not JSON: publish raises ValueError instead of storing an unparseable message."""
    buf = await opened(config)
    try:
        with pytest.raises(ValueError, match="JSON"):
            await buf.publish("kpi", "t", {"oee": float("nan")}, priority=Priority.HIGH)
        assert buf.backlog == 0
    finally:
        await buf.close()


async def test_state_survives_restart(config: StorageConfig) -> None:
    """Calculator state saved before close is loaded after reopening; unknown keys give None."""
    buf = await opened(config)
    await buf.save_state("calc/press1", {"last": {"count": 41}, "open_stop": None})
    await buf.save_state("calc/press1", {"last": {"count": 42}, "open_stop": None})
    await buf.close()
    buf = await opened(config)
    try:
        assert await buf.load_state("calc/press1") == {"last": {"count": 42}, "open_stop": None}
        assert await buf.load_state("calc/other") is None
    finally:
        await buf.close()


async def test_not_a_database_is_moved_aside(
    config: StorageConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-SQLite file is renamed *.corrupt-<UTC>, logged at ERROR, and a fresh DB starts."""
    config.path.parent.mkdir(parents=True)
    config.path.write_bytes(b"this is not a database at all" * 200)
    buf = Buffer(config, "gw1")
    with caplog.at_level(logging.ERROR):
        await buf.open()
    try:
        moved = list(config.path.parent.glob("buffer.db.corrupt-*"))
        assert len(moved) == 1
        assert moved[0].read_bytes().startswith(b"this is not")
        assert any("corrupt" in r.message and r.levelno == logging.ERROR for r in caplog.records)
        assert buf.stats()["moved_aside"] == str(moved[0])
        assert await buf.publish("kpi", "t", {}, priority=Priority.HIGH) == 1
    finally:
        await buf.close()


async def test_corrupt_page_detected_by_quick_check(config: StorageConfig) -> None:
    """Damage inside a valid SQLite file fails quick_check at open and is moved aside."""
    buf = await opened(config)
    buf.add_readings(readings(20_000))
    await buf.close()
    con = sqlite3.connect(config.path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with open(config.path, "r+b") as fh:  # overwrite pages in the middle of the file
        for page in range(pages // 2, pages // 2 + 4):
            fh.seek(page * 4096)
            fh.write(b"\xa5" * 4096)
    buf = await opened(config)
    try:
        assert buf.moved_aside is not None
        assert values(config.path) == 0
    finally:
        await buf.close()


async def test_newer_schema_is_refused(config: StorageConfig) -> None:
    """A database written by a newer agent is not downgraded or replaced."""
    buf = await opened(config)
    await buf.close()
    con = sqlite3.connect(config.path)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(RuntimeError, match="newer"):
        await Buffer(config, "gw1").open()
    assert config.path.exists()


async def test_fresh_database_is_migrated_with_wal_and_incremental_vacuum(
    config: StorageConfig,
) -> None:
    """A new file gets the current schema version, WAL mode and incremental auto-vacuum."""
    buf = await opened(config)
    await buf.close()
    con = sqlite3.connect(config.path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    finally:
        con.close()


async def test_publish_many_is_one_atomic_commit(config: StorageConfig) -> None:
    """publish_many stores all messages with consecutive seqs, or none when one is invalid."""
    from edge_agent.buffer import Outgoing

    buf = await opened(config)
    try:
        batch = [
            Outgoing(kind="telemetry", topic="t", data={"i": i}, priority=Priority.LOW)
            for i in range(5)
        ]
        seqs = await buf.publish_many(batch)
        assert seqs == [1, 2, 3, 4, 5]
        with pytest.raises(ValueError, match="JSON"):
            await buf.publish_many(
                [*batch, Outgoing(kind="kpi", topic="t", data={"x": float("inf")}, priority=2)]
            )
        assert buf.backlog == 5
        assert count(config.path, "outbox") == 5
    finally:
        await buf.close()
