"""Disk budget and retention: eviction order, drop counting, disk-full hold and recovery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.buffer.schema import plan_size
from edge_agent.errors import StorageFull

from .helpers import count, readings, values

BIG = {"blob": "x" * 3000}  # ~ one page per outbox row


def small(tmp_path: Path, **kw: object) -> StorageConfig:
    return StorageConfig(
        path=tmp_path / "b.db", max_mb=1, flush_interval_ms=10, flush_rows=1000, **kw
    )  # type: ignore[arg-type]


async def fill_with_kpis(buf: Buffer) -> list[int]:
    """Publish large KPI rows until the budget refuses one (bounded: 1 MiB holds far fewer)."""
    seqs: list[int] = []
    for i in range(1000):
        try:
            seqs.append(
                await buf.publish("kpi", "t", BIG, priority=Priority.HIGH, record_key=f"k{i}")
            )
        except StorageFull:
            return seqs
    pytest.fail("the budget never filled")


def file_pages(path: Path) -> int:
    return path.stat().st_size // 4096


async def test_budget_evicts_oldest_readings_first_and_keeps_summaries(tmp_path: Path) -> None:
    """Over budget, the oldest readings are deleted and counted; unpublished KPI rows all stay."""
    cfg = small(tmp_path)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        kpi = [
            await buf.publish("kpi", "t", {"i": i}, priority=Priority.HIGH, record_key=f"k{i}")
            for i in range(20)
        ]
        for chunk in range(40):
            buf.add_readings(readings(1000, start=1_800_000_000.0 + chunk * 1000))
            await buf.flush()
        await buf.run_maintenance()
        stats = buf.stats()
        assert stats["dropped"]["readings"] > 0
        assert stats["db_bytes"] <= plan_size(cfg.max_bytes).max_page_count * 4096
        assert file_pages(cfg.path) <= plan_size(cfg.max_bytes).max_page_count
        assert count(cfg.path, "outbox", "kind = 'kpi'") == len(kpi)
        assert count(cfg.path, "kpi_records") == len(kpi)
        # The newest readings survived, the oldest went first.
        con = sqlite3.connect(cfg.path)
        low, high = con.execute("SELECT min(ts), max(ts) FROM frames").fetchone()
        con.close()
        assert high == 1_800_000_000.0 + 39 * 1000 + 999
        assert low > 1_800_000_000.0
        assert stats["written"]["readings"] == 40_000
        assert values(cfg.path) + stats["dropped"]["readings"] == 40_000
    finally:
        await buf.close()


async def test_low_priority_telemetry_is_evicted_before_kpi(tmp_path: Path) -> None:
    """With no readings to drop, unpublished telemetry goes (counted per kind); KPIs stay."""
    cfg = small(tmp_path)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        for i in range(10):
            await buf.publish("kpi", "t", BIG, priority=Priority.HIGH, record_key=f"k{i}")
        # A KPI given a low priority by mistake is still protected by its kind.
        await buf.publish("kpi", "t", BIG, priority=Priority.LOW, record_key="mislabelled")
        for _ in range(130):
            await buf.publish("telemetry", "t", BIG, priority=Priority.LOW)
        for _ in range(130):
            await buf.publish("health", "t", BIG, priority=Priority.MEDIUM)
        await buf.run_maintenance()
        stats = buf.stats()
        assert stats["dropped"].get("outbox:telemetry", 0) > 0
        # Telemetry (least important) goes before health.
        if stats["dropped"].get("outbox:health", 0):
            assert count(cfg.path, "outbox", "kind = 'telemetry'") == 0
        assert count(cfg.path, "outbox", "kind = 'kpi'") == 11
        assert stats["backlog"] == count(cfg.path, "outbox")
    finally:
        await buf.close()


async def test_full_of_kpi_raises_storage_full_holds_readings_and_recovers(tmp_path: Path) -> None:
    """Only never-evicted rows left: StorageFull, readings wait in RAM, an ack recovers."""
    cfg = small(tmp_path)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        seqs = await fill_with_kpis(buf)
        # The refused summary is the caller's to hold and report (outbox_full), not a
        # condition of the rows: no "cannot write" / "recovered" lines per refusal.
        assert buf.stats()["outbox_full"] == "budget"
        assert buf.stats()["disk_full"] is False
        buf.add_readings(readings(2000))
        await buf.flush()
        assert buf.stats()["disk_full"] is True
        assert buf.stats()["full_reason"] == "budget"
        assert buf.stats()["held_rows"] == 2000
        assert count(cfg.path, "outbox") == len(seqs)  # nothing unpublished was lost

        await buf.ack(seqs[: len(seqs) // 2])  # the uplink delivered half: space returns
        await buf.flush()
        stats = buf.stats()
        assert stats["disk_full"] is False
        assert stats["held_rows"] == 0
        assert values(cfg.path) == 2000
        assert await buf.publish("kpi", "t", {}, priority=Priority.HIGH) > seqs[-1]
        assert buf.stats()["outbox_full"] == ""
    finally:
        await buf.close()


async def test_memory_hold_is_bounded(tmp_path: Path) -> None:
    """While writes fail, held rows are capped at memory_max_rows and the excess is counted."""
    cfg = small(tmp_path, memory_max_rows=100)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        await fill_with_kpis(buf)
        buf.add_readings(readings(2000))
        await buf.flush()
        stats = buf.stats()
        assert stats["dropped"]["readings:memory_full"] == 1900
        # The 100 kept rows are either still held or were written once a retry fitted them.
        assert stats["held_rows"] + values(cfg.path) == 100
    finally:
        await buf.close()


async def test_age_retention_keeps_unpublished_summaries(tmp_path: Path) -> None:
    """Old readings and old published summaries expire; an old unpublished summary stays."""
    now = [1_800_000_000.0 - 7200]
    cfg = StorageConfig(path=tmp_path / "b.db", readings_retention_h=1, summaries_retention_h=1)
    buf = Buffer(cfg, "gw1", clock=lambda: now[0])
    await buf.open()
    try:
        buf.add_readings(readings(10, start=now[0]))
        old_published = await buf.publish("kpi", "t", {}, priority=Priority.HIGH, record_key="a")
        await buf.publish("kpi", "t", {}, priority=Priority.HIGH, record_key="b")
        await buf.ack([old_published])
        now[0] += 7200
        buf.add_readings(readings(5, start=now[0]))
        await buf.flush()
        await buf.run_maintenance()
        assert values(cfg.path) == 5
        assert count(cfg.path, "kpi_records") == 1
        assert count(cfg.path, "kpi_records", "record_key = 'b'") == 1
        assert buf.stats()["expired"] == {"readings": 10, "kpi_records": 1}
    finally:
        await buf.close()


@pytest.mark.parametrize("deleted", [(), (3, 4, 5), tuple(range(1, 10))])
def test_first_id_at_binary_search(deleted: tuple[int, ...]) -> None:
    """first_id_at finds the first rowid whose ts reaches the bound, across gaps in rowids."""
    from edge_agent.buffer.retention import first_id_at

    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, ts REAL)")
    assert first_id_at(con, "readings", 0.0) is None
    con.executemany("INSERT INTO readings VALUES (?, ?)", [(i, 100.0 + i) for i in range(1, 21)])
    con.executemany("DELETE FROM readings WHERE id = ?", [(i,) for i in deleted])
    remaining = [i for i in range(1, 21) if i not in deleted]
    for bound in (0.0, 101.0, 104.5, 106.0, 110.0, 120.0, 121.0, 500.0):
        expected = next((i for i in remaining if 100.0 + i >= bound), 21)
        got = first_id_at(con, "readings", bound)
        assert got is not None
        # Every row before the cut is older, every row from it on is not.
        assert all(100.0 + i < bound for i in remaining if i < got)
        assert all(100.0 + i >= bound for i in remaining if i >= got)
        assert next((i for i in remaining if i >= got), 21) == expected
    con.close()


def so_far(i: int) -> dict[str, object]:
    return {"name": "hour:2026-12-04T10", "final": False, "i": i, **BIG}


async def test_superseded_so_far_rows_are_evicted_before_anything_published(
    tmp_path: Path,
) -> None:
    """A long outage of "so far" records: older versions of a record make room, counted.

    Three windows' so-far records, 400 rounds into a 1 MiB budget (~190 pages, one per
    row): never StorageFull; the outbox keeps the latest row of each window, the final
    record and the stop event are never touched, readings go first.
    """
    cfg = small(tmp_path)
    buf = Buffer(cfg, "gw1")
    await buf.open()
    try:
        final = await buf.publish(
            "kpi", "t", {"final": True, **BIG}, priority=Priority.HIGH, record_key="m|day|0|True"
        )
        stop = await buf.publish("stop", "t", BIG, priority=Priority.HIGH)
        buf.add_readings(readings(3000))
        await buf.flush()
        latest: dict[str, int] = {}
        for i in range(400):
            for window in ("hour", "day", "month"):
                key = f"m|{window}|0|False"
                latest[key] = await buf.publish(
                    "kpi", "t", so_far(i), priority=Priority.HIGH, record_key=key
                )
        await buf.run_maintenance()
        stats = buf.stats()
        assert stats["dropped"]["readings"] > 0
        assert stats["dropped"]["superseded:kpi"] > 1000
        assert "outbox:kpi" not in stats["dropped"]
        con = sqlite3.connect(cfg.path)
        kept = {r[0] for r in con.execute("SELECT seq FROM outbox")}
        con.close()
        assert {final, stop, *latest.values()} <= kept
        assert stats["backlog"] == len(kept)
        assert stats["backlog"] + stats["dropped"]["superseded:kpi"] == 2 + 1200
    finally:
        await buf.close()


def journal(n: int, start: float, machine: str = "m") -> list[tuple[str, int, float, str]]:
    return [(machine, i + 1, start + i, '{"t":"x"}') for i in range(n)]


async def test_the_sample_journal_ages_with_the_intervals_and_goes_right_after_readings(
    tmp_path: Path,
) -> None:
    """Journal rows older than events_retention_h expire; under the budget they go second."""
    now = [1_800_000_000.0 - 7200]
    cfg = StorageConfig(path=tmp_path / "b.db", events_retention_h=1, readings_retention_h=1)
    buf = Buffer(cfg, "gw1", clock=lambda: now[0])
    await buf.open()
    try:
        buf.add_samples(journal(10, now[0]))
        now[0] += 7200
        buf.add_samples([("m", 11 + i, now[0] + i, "{}") for i in range(5)])
        await buf.flush()
        await buf.run_maintenance()
        assert count(cfg.path, "samples") == 5
        assert buf.stats()["expired"] == {"samples": 10}
    finally:
        await buf.close()
    budget = small(tmp_path / "budget")
    buf = Buffer(budget, "gw1")
    await buf.open()
    try:
        buf.add_samples(journal(3000, 1_800_000_000.0))
        buf.add_readings(readings(50, start=1_800_000_000.0))
        await buf.flush()
        seqs = await fill_with_kpis(buf)
        assert seqs
        dropped = buf.stats()["dropped"]
        assert dropped.get("readings") == 50  # raw values first, then the journal
        assert dropped.get("samples", 0) > 0
        assert count(budget.path, "kpi_records") == len(seqs)
    finally:
        await buf.close()


def _statements_of(con: sqlite3.Connection, call: object) -> list[str]:
    """Every SQL statement ``call()`` runs on ``con``, with its parameters inlined."""
    seen: list[str] = []
    con.set_trace_callback(seen.append)
    try:
        call()  # type: ignore[operator]
    finally:
        con.set_trace_callback(None)
    return seen


def test_first_id_at_never_scans_a_large_table() -> None:
    """first_id_at reads a few b-tree pages, not the whole table (issue 20).

    Both the query plan of every statement it runs (no ``SCAN readings``) and the work
    SQLite does (virtual-machine steps, counted by a progress handler) are checked; the
    old ``SELECT min(rowid), max(rowid)`` fails both on a table of this size.
    """
    from edge_agent.buffer.retention import first_id_at

    rows = 200_000
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, ts REAL NOT NULL, value)")
    con.execute(
        "INSERT INTO readings (id, ts, value) "
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "SELECT i, 1000.0 + i, i * 2 FROM n",
        (rows,),
    )
    statements = _statements_of(con, lambda: first_id_at(con, "readings", 1000.0 + 150_000))
    assert statements
    for sql in statements:
        plan = [r[3] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}")]
        scans = [d for d in plan if d.startswith("SCAN") and d != "SCAN CONSTANT ROW"]
        assert not scans, (sql, plan)

    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    con.set_progress_handler(tick, 100)
    assert first_id_at(con, "readings", 1000.0 + 150_000) == 150_000
    assert first_id_at(con, "readings", 0.0) == 1
    assert first_id_at(con, "readings", 1e9) == rows + 1
    con.set_progress_handler(None, 0)
    # ~3 x log2(200k) probes of a few dozen VM steps each; a full scan is > 2000 ticks.
    assert steps * 100 < rows / 20, steps
    con.close()
