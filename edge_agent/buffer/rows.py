"""Row conversion and insertion for the buffer's batched tables (readings, comms events, intervals).

Turns model objects into the rows the writer inserts: readings refer to a
``series`` row per (device, tag) (cached ids, created inside the caller's
transaction), quality is stored as a small integer code, list values as JSON
text. :meth:`SeriesIds.insert` writes readings with multi-row ``INSERT``
statements that bind no NULLs for the common row, in arrival order (rowid order
stays arrival order). Runs on the writer thread only; no I/O besides the
statements it is asked to run in the caller's transaction, no threads, no
state except the id cache.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_agent.buffer.schema import QUALITY_CODES
from edge_agent.model import CommsEvent, Quality, Reading

_GOOD = Quality.GOOD

TABLES = ("readings", "comms_events", "intervals")

INSERT = {
    "readings": "INSERT INTO readings(ts, series, value, quality, reason, mono, source_ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "comms_events": "INSERT INTO comms_events(ts, device, state, reason, mono) "
    "VALUES (?, ?, ?, ?, ?)",
    "intervals": "INSERT INTO intervals(machine, start, end, data) VALUES (?, ?, ?, ?)",
}


# Readings are inserted READINGS_PER_STATEMENT rows per statement (multi-row VALUES):
# sqlite3's executemany re-binds, steps and releases the GIL once per row, which
# costs about a third of the insert time at 12,500 rows/s and makes the writer
# thread hand the GIL back and forth with the event loop per row.
#
# Most readings are "plain": a value, no reason, no source time. They go through a
# statement with five parameters and the NULLs left to the column defaults, because
# sqlite3 binds None (and bool) about five times slower than an int or a float: it
# first tries the adapter protocol and fails with an exception (measured 1.0 us
# against 0.2 us per parameter on Python 3.11; two Nones per row were 40 % of the
# insert). 5 x 100 = 500 parameters, far below SQLite's limit (32,766 since 3.32,
# 999 before). The other readings (bad quality, a reason, a source time) are
# inserted with all seven columns; runs of each kind are written in arrival order,
# so rowid order stays arrival order.
READINGS_PER_STATEMENT = 100
_PLAIN_COLUMNS = 5
INSERT_PLAIN = "INSERT INTO readings(ts, series, value, quality, mono) VALUES (?, ?, ?, ?, ?)"
INSERT_PLAIN_MANY = (
    "INSERT INTO readings(ts, series, value, quality, mono) VALUES "  # noqa: S608 - constant placeholders only
    + ",".join(["(?, ?, ?, ?, ?)"] * READINGS_PER_STATEMENT)
)


class SeriesIds:
    """(device, tag) -> series id, cached; new pairs are inserted in the caller's transaction."""

    def __init__(self) -> None:
        # device -> tag -> id: one dict look-up per device change, one per reading.
        self._ids: dict[str, dict[str, int]] = {}

    def load(self, con: sqlite3.Connection) -> None:
        """Fill the cache from the table (at open)."""
        ids: dict[str, dict[str, int]] = {}
        for i, d, t in con.execute("SELECT id, device, tag FROM series"):
            ids.setdefault(d, {})[t] = int(i)
        self._ids = ids

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction may have discarded new ids)."""
        self._ids.clear()

    def insert(self, con: sqlite3.Connection, readings: Sequence[Reading]) -> None:
        """Insert the readings' rows in arrival order; call inside a transaction.

        Creates the series rows of new (device, tag) pairs on the way.
        """
        # Hot path (hundreds of thousands of rows/s): plain loop, no per-row helper calls.
        ids = self._ids
        codes = QUALITY_CODES
        good = _GOOD
        dumps = json.dumps
        plain: list[object] = []  # flat parameters of the current run of plain rows
        extend = plain.extend
        full: list[tuple[object, ...]] = []  # the current run of other rows
        device: str | None = None
        tags: dict[str, int] = {}
        for r in readings:
            if r.device != device:
                device = r.device
                tags = ids.get(device) or ids.setdefault(device, {})
            sid = tags.get(r.tag)
            if sid is None:
                sid = self._new(con, device, r.tag)
            value = r.value
            kind = value.__class__
            if kind is list:
                value = dumps(value)
            elif kind is bool:
                value = int(value)  # type: ignore[arg-type]  # stored as 0/1 either way
            quality = r.quality
            code = 0 if quality is good else codes[quality.value]
            if value is None or r.reason or r.source_ts is not None:
                if plain:
                    _insert_plain(con, plain)
                    plain.clear()
                full.append((r.ts, sid, value, code, r.reason or None, r.mono, r.source_ts))
            else:
                if full:
                    con.executemany(INSERT["readings"], full)
                    full.clear()
                extend((r.ts, sid, value, code, r.mono))
        if plain:
            _insert_plain(con, plain)
        if full:
            con.executemany(INSERT["readings"], full)

    def _new(self, con: sqlite3.Connection, device: str, tag: str) -> int:
        key = (device, tag)
        con.execute("INSERT OR IGNORE INTO series(device, tag) VALUES (?, ?)", key)
        sid = int(
            con.execute("SELECT id FROM series WHERE device = ? AND tag = ?", key).fetchone()[0]
        )
        self._ids.setdefault(device, {})[tag] = sid
        return sid


def _insert_plain(con: sqlite3.Connection, flat: list[object]) -> None:
    """Insert plain rows (five parameters each, concatenated) with multi-row statements."""
    step = READINGS_PER_STATEMENT * _PLAIN_COLUMNS
    whole = len(flat) - len(flat) % step
    execute = con.execute
    for i in range(0, whole, step):
        execute(INSERT_PLAIN_MANY, flat[i : i + step])
    if whole < len(flat):
        n = _PLAIN_COLUMNS
        con.executemany(INSERT_PLAIN, (flat[i : i + n] for i in range(whole, len(flat), n)))


def _comms_row(e: CommsEvent) -> tuple[object, ...]:
    return (e.ts, e.device, e.state.value, e.reason, e.mono)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def interval_row(machine: str, interval: Mapping[str, Any]) -> tuple[object, ...]:
    """Row of the intervals table: ``start``/``end`` (UNIX seconds) extracted, the rest as JSON."""
    return (
        machine,
        _number(interval.get("start")),
        _number(interval.get("end")),
        json.dumps(interval, separators=(",", ":"), default=str),
    )


CONVERT: dict[str, Callable[[Any], list[tuple[object, ...]]]] = {
    "comms_events": lambda events: [_comms_row(e) for e in events],
    "intervals": list,  # already converted by the caller (machine name needed)
}
