"""Multi-row insertion of readings (``SeriesIds.insert``): order, values and series ids."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge_agent.buffer.rows import READINGS_PER_STATEMENT, SeriesIds
from edge_agent.buffer.schema import QUALITY_CODES, open_database
from edge_agent.model import Quality, Reading


def _readings(n: int) -> list[Reading]:
    out = []
    for i in range(n):
        device = f"d{i // 50}"
        if i % 7 == 3:
            out.append(
                Reading(
                    device, f"t{i % 5}", None, 1000.0 + i, 5.0 + i, Quality.BAD, "timeout", None
                )
            )
        elif i % 11 == 4:
            out.append(Reading(device, f"t{i % 5}", [1, 2.5, i], 1000.0 + i, 5.0 + i))
        elif i % 13 == 5:
            out.append(
                Reading(device, f"t{i % 5}", 0.1 * i, 1000.0 + i, 5.0 + i, Quality.STALE, "", 9.5)
            )
        else:
            out.append(Reading(device, f"t{i % 5}", i * 3, 1000.123456789 + i, 5.0 + i))
    return out


def _stored(con: sqlite3.Connection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT r.ts, s.device, s.tag, r.value, r.quality, r.reason, r.mono, r.source_ts "
        "FROM readings r JOIN series s ON s.id = r.series ORDER BY r.id"
    ).fetchall()


def _expected(readings: list[Reading]) -> list[tuple[object, ...]]:
    return [
        (
            r.ts,
            r.device,
            r.tag,
            json.dumps(r.value) if isinstance(r.value, list) else r.value,
            QUALITY_CODES[r.quality.value],
            r.reason or None,
            r.mono,
            r.source_ts,
        )
        for r in readings
    ]


@pytest.mark.parametrize(
    "n", [1, READINGS_PER_STATEMENT - 1, READINGS_PER_STATEMENT, 2 * READINGS_PER_STATEMENT + 57]
)
def test_insert_stores_every_reading_in_arrival_order(tmp_path: Path, n: int) -> None:
    """Full multi-row statements plus the remainder store every reading exactly, in order."""
    con, _ = open_database(tmp_path / "b.db", 16 * 2**20)
    series = SeriesIds()
    series.load(con)
    readings = _readings(n)
    con.execute("BEGIN")
    series.insert(con, readings)
    con.execute("COMMIT")
    assert _stored(con) == _expected(readings)
    con.close()


def test_series_ids_survive_reopen_and_rollback(tmp_path: Path) -> None:
    """Cached ids match the table after a reload; a rolled-back new series is re-created."""
    con, _ = open_database(tmp_path / "b.db", 16 * 2**20)
    series = SeriesIds()
    series.load(con)
    first = _readings(120)
    con.execute("BEGIN")
    series.insert(con, first)
    con.execute("COMMIT")
    # A batch with a new series, rolled back: the cache must forget the discarded id.
    con.execute("BEGIN")
    series.insert(con, [Reading("new", "x", 1, 2000.0, 9.0)])
    con.execute("ROLLBACK")
    series.forget()
    reloaded = SeriesIds()
    reloaded.load(con)
    second = [*_readings(30), Reading("new", "x", 2, 2001.0, 10.0)]
    con.execute("BEGIN")
    reloaded.insert(con, second)
    con.execute("COMMIT")
    assert _stored(con) == _expected(first + second)
    con.close()


def test_all_plain_batches_are_stored_like_row_by_row(tmp_path: Path) -> None:
    """Good plain values of known series (the column-wise path) are stored exactly.

    A bool or a new series in a batch sends it row by row, still exact.
    """
    con, _ = open_database(tmp_path / "b.db", 16 * 2**20)
    series = SeriesIds()
    series.load(con)
    known = [Reading(f"d{i % 3}", f"t{i % 7}", 0, 999.0, 4.0) for i in range(21)]
    plain = [
        Reading(f"d{i % 3}", f"t{i % 7}", v, 1000.5 + i, 5.25 + i)
        for i, v in enumerate([1, 2.5, "text", -(2**40), 1e300, 7] * 40)
    ]
    # Polls: runs sharing device, ts and mono, one longer than a statement's rows.
    polls = [Reading("d1", f"t{i % 7}", i * 3, 3000.25, 9.5) for i in range(1200)]
    polls += [Reading("d2", f"t{i % 7}", -i, 3000.25, 9.5) for i in range(7)]
    polls += [Reading("d2", f"t{i % 7}", 0.5 * i, 3001.0, 10.5) for i in range(7)]
    with_bool = [*plain[:5], Reading("d0", "t0", True, 2000.0, 6.0), *plain[5:9]]
    with_new = [*plain[:3], Reading("d9", "new", 4, 2001.0, 7.0)]
    batches = [known, plain, polls, with_bool, with_new]
    for batch in batches:
        con.execute("BEGIN")
        series.insert(con, batch)
        con.execute("COMMIT")
    stored = _stored(con)
    assert stored == _expected([r for batch in batches for r in batch])
    assert [type(row[3]) for row in stored[len(known) : len(known) + 6]] == [
        int,
        float,
        str,
        int,
        float,
        int,
    ]
    con.close()
