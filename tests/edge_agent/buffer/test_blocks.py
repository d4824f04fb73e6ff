"""Raw values as frames: raw modes, schema 4 -> 5 with old rows, export equality, eviction."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.buffer.config import RawMode
from edge_agent.buffer.rows import SeriesIds
from edge_agent.buffer.schema import MIGRATIONS, PAGE_SIZE, connect
from edge_agent.columns import Column, ColumnPoll
from edge_agent.commands.export import rows as export_rows
from edge_agent.model import Quality, Reading

from .helpers import count, stored, values

# An hour boundary three hours ago (inside the default retention of raw values).
HOUR = time.time() // 3600 * 3600 - 3 * 3600


NOW = time.time() - 7200


def poll(device: str, t: float, k: int, tags: int = 6) -> list[Reading]:
    """One poll: ints, a float, a bool, a bad value with a reason (every 10th), a list."""
    out = [Reading(device, f"r{i}", (k * 7 + i) & 0xFFFF, t, t - HOUR) for i in range(tags)]
    out += [
        Reading(device, "temp", 20.0 + k / 8, t, t - HOUR),
        Reading(device, "run", k % 3 != 0, t, t - HOUR),
        Reading(device, "arr", [k, k + 1], t, t - HOUR),
    ]
    if k % 10 == 0:
        out.append(Reading(device, "bad", None, t, t - HOUR, Quality.BAD, "timeout"))
    else:
        out.append(Reading(device, "bad", k, t, t - HOUR))
    return out


def hour_of_polls(start: float) -> list[list[Reading]]:
    """An hour of 10 s polls of two devices (one batch per device and poll)."""
    return [poll(d, start + s, int(s // 10)) for s in range(0, 3600, 10) for d in ("p1", "p2")]


def v4_database(path: Path, batches: list[list[Reading]]) -> None:
    """A buffer as schema 4 wrote it: one readings row per value."""
    con = connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    for version in range(1, 5):
        for statement in MIGRATIONS[version]:
            con.execute(statement)
    con.execute("PRAGMA user_version=4")
    series = SeriesIds()
    con.execute("BEGIN")
    for batch in batches:
        series.insert(con, batch)
    con.execute("COMMIT")
    con.close()


def exported(path: Path, start: float, end: float) -> list[dict[str, object]]:
    con = connect(path, read_only=True)
    try:
        return list(export_rows(con, "readings", start, end))
    finally:
        con.close()


def shifted(items: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """Export rows without their time (to compare two hours)."""
    return [tuple(v for k, v in item.items() if k != "ts") for item in items]


async def test_old_rows_stay_readable_and_a_frame_hour_exports_like_a_row_hour(
    tmp_path: Path,
) -> None:
    """Schema 4 rows survive the migration; a frame hour exports exactly as a row hour.

    Export merges both tables by time.
    """
    db = tmp_path / "b.db"
    v4_database(db, hour_of_polls(HOUR))
    buf = Buffer(StorageConfig(path=db), "gw")
    await buf.open()
    try:
        for batch in hour_of_polls(HOUR + 3600):
            buf.add_readings(batch)
        await buf.flush()
    finally:
        await buf.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 5
    assert con.execute("SELECT count(*) FROM readings").fetchone()[0] == 360 * 2 * 10
    assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 360 * 2
    con.close()
    rows_hour = exported(db, HOUR, HOUR + 3600)
    frames_hour = exported(db, HOUR + 3600, HOUR + 7200)
    assert len(rows_hour) == len(frames_hour) == 360 * 2 * 10
    assert shifted(rows_hour) == shifted(frames_hour)
    # Both hours in one export: in time order across the two tables.
    both = exported(db, HOUR + 3000, HOUR + 4000)
    assert [r["ts"] for r in both] == sorted(r["ts"] for r in both)  # type: ignore[type-var]
    assert {r["ts"] for r in both} >= {rows_hour[-1]["ts"], frames_hour[0]["ts"]}
    # The CSV of a frame hour is the CSV of a row hour (bools 0/1, lists as JSON).
    assert _csv(rows_hour) == _csv(frames_hour)


def _csv(items: list[dict[str, object]]) -> list[list[str]]:
    from edge_agent.commands.export import write

    out = io.StringIO()
    write(out, "readings", "csv", iter(items))
    return [row[1:] for row in csv.reader(io.StringIO(out.getvalue()))]


async def test_evidence_rebuilds_the_same_samples_from_frames_as_from_rows(
    tmp_path: Path,
) -> None:
    """The readings -> samples fallback of evidence bundles reads frames like rows."""
    from edge_agent.evidence.samples import ReadingsSamples

    rows_db, frames_db = tmp_path / "rows.db", tmp_path / "frames.db"
    batches = hour_of_polls(HOUR)
    v4_database(rows_db, batches)
    buf = Buffer(StorageConfig(path=frames_db), "gw")
    await buf.open()
    for batch in batches:
        buf.add_readings(batch)
    await buf.close()
    got = []
    for db in (rows_db, frames_db):
        con = connect(db, read_only=True)
        source = ReadingsSamples(con, {})
        got.append(
            [
                (r.device, r.tag, r.value, r.ts, r.mono, r.quality)
                for r in source._readings(["p1"], HOUR, HOUR + 3600)
            ]
        )
        con.close()
    assert len(got[0]) == 360 * 10
    # Rows stored bools as 0/1 and lists as JSON text; frames keep them as polled.
    assert [_as_row(x) for x in got[1]] == got[0]


def _as_row(item: tuple[object, ...]) -> tuple[object, ...]:
    import json

    value = item[2]
    if isinstance(value, bool):
        value = int(value)
    elif isinstance(value, list):
        value = json.dumps(value)
    return (item[0], item[1], value, *item[3:])


@pytest.mark.parametrize("mode", list(RawMode))
async def test_raw_modes_store_blocks_changes_or_nothing(tmp_path: Path, mode: RawMode) -> None:
    """Each raw mode stores what it says.

    blocks: every value; changes: the first poll whole, then changed values and quality
    changes only (a restart stores the next poll whole again); none: no frame.
    """
    cfg = StorageConfig(path=tmp_path / "b.db", raw=mode)
    polls = [
        [Reading("d", "a", 1, NOW + 10, 0.0), Reading("d", "b", 5.0, NOW + 10, 0.0)],
        [Reading("d", "a", 1, NOW + 11, 1.0), Reading("d", "b", 5.0, NOW + 11, 1.0)],  # no change
        [Reading("d", "a", 2, NOW + 12, 2.0), Reading("d", "b", 5.0, NOW + 12, 2.0)],  # a changed
        [
            Reading("d", "a", 2, NOW + 13, 3.0, Quality.STALE),  # quality changed
            Reading("d", "b", 5.0, NOW + 13, 3.0),
        ],
        [
            Reading("d", "a", 2.0, NOW + 14, 4.0),
            Reading("d", "b", 5.0, NOW + 14, 4.0),
        ],  # int -> float
    ]
    buf = Buffer(cfg, "gw")
    await buf.open()
    for p in polls:
        buf.add_readings(p)
    await buf.flush()
    stats = buf.stats()
    await buf.close()
    got = [(ts, tag, value) for ts, _d, tag, value in stored(cfg.path)]
    assert stats["written"]["readings"] == 10
    if mode is RawMode.BLOCKS:
        assert got == [(r.ts, r.tag, r.value) for p in polls for r in p]
    elif mode is RawMode.CHANGES:
        assert got == [
            (NOW + 10, "a", 1),
            (NOW + 10, "b", 5.0),
            (NOW + 12, "a", 2),
            (NOW + 13, "a", 2),
            (NOW + 14, "a", 2.0),
        ]
        assert count(cfg.path, "frames") == 4
    else:
        assert got == []
        assert count(cfg.path, "frames") == 0
    # After a restart the first poll of changes is stored whole (nothing to compare with).
    buf = Buffer(cfg, "gw")
    await buf.open()
    buf.add_readings([Reading("d", "a", 2.0, NOW + 15, 5.0), Reading("d", "b", 5.0, NOW + 15, 5.0)])
    await buf.close()
    expected = {RawMode.BLOCKS: 12, RawMode.CHANGES: 7, RawMode.NONE: 0}[mode]
    assert values(cfg.path) == expected


async def test_frames_are_evicted_oldest_first_under_the_budget_counted_in_values(
    tmp_path: Path,
) -> None:
    """Over budget the oldest frames go first, counted in values (dropped["readings"])."""
    cfg = StorageConfig(path=tmp_path / "b.db", max_mb=1, flush_interval_ms=10)
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        total = 0
        for k in range(4000):  # 4000 polls of 40 noisy floats: ~1.3 MB > 1 MiB
            batch = [
                Reading("d", f"t{i}", ((k * 40 + i) * 2654435761 % 2**32) / 7.0, NOW + k, k)
                for i in range(40)
            ]
            buf.add_readings(batch)
            total += len(batch)
            if k % 500 == 499:
                await buf.flush()
                await buf.run_maintenance()
        await buf.flush()
        await buf.run_maintenance()
        stats = buf.stats()
        assert stats["dropped"]["readings"] > 0
        assert stats["dropped"]["readings"] % 40 == 0  # whole frames, counted in values
        kept = stored(cfg.path)
        assert len(kept) + stats["dropped"]["readings"] == total
        assert kept[-1][0] == NOW + 3999  # the newest survived
        assert stats["db_bytes"] <= 1024 * 1024
        assert stats["db_bytes"] // PAGE_SIZE <= stats["page_cap"]
    finally:
        await buf.close()


def _column_polls() -> list[ColumnPoll]:
    """Column polls: two blocks read together (one frame), a block read later, repeats."""
    out = []
    for k in range(4):
        t = NOW + 20 + k
        out.append(
            ColumnPoll(
                "c",
                [
                    Column(("a", "b"), [k, 5], t, float(k)),
                    Column(("f",), [1.5 * (k % 2)], t, float(k)),
                    Column(("late",), [7], t + 0.25, k + 0.25),
                ],
            )
        )
    return out


@pytest.mark.parametrize("mode", list(RawMode), ids=lambda m: m.value)
async def test_a_column_poll_is_stored_as_its_readings_would_be(
    tmp_path: Path, mode: RawMode
) -> None:
    """Queued whole (no reading per value), a column poll gives the frames of its readings."""
    got = []
    for name, as_columns in (("columns", True), ("readings", False)):
        cfg = StorageConfig(path=tmp_path / f"{name}.db", raw=mode)
        buf = Buffer(cfg, "gw")
        await buf.open()
        for p in _column_polls():
            buf.add_readings(p if as_columns else list(p))
        await buf.flush()
        written = buf.stats()["written"]["readings"]
        await buf.close()
        got.append((stored(cfg.path), count(cfg.path, "frames"), written))
    assert got[0] == got[1]
    assert got[0][2] == 16
    if mode is RawMode.BLOCKS:
        assert got[0][1] == 8  # per poll: the two blocks read together, then the late one


async def test_a_column_poll_the_queue_cannot_take_is_dropped_whole_and_counted(
    tmp_path: Path,
) -> None:
    """A full queue drops a column poll as a whole, counted in values."""
    cfg = StorageConfig(path=tmp_path / "b.db", flush_rows=4, queue_max_rows=5)
    buf = Buffer(cfg, "gw")
    await buf.open()
    try:
        polls = _column_polls()
        assert buf._w().put("readings", [polls[0]], weight=len(polls[0])) == 0
        assert buf._w().put("readings", [polls[1]], weight=len(polls[1])) == 4
        assert buf.stats()["dropped"]["readings:queue_full"] == 4
    finally:
        await buf.close()
