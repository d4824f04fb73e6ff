"""Row conversion for the buffer's batched tables (readings, comms events, intervals).

Turns model objects into the tuples the writer inserts: readings refer to a
``series`` row per (device, tag) (cached ids, created inside the caller's
transaction), quality is stored as a small integer code, list values as JSON
text. Runs on the writer thread only; no I/O besides the series look-ups, no
threads, no state except the id cache.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_agent.buffer.schema import QUALITY_CODES
from edge_agent.model import CommsEvent, Reading

TABLES = ("readings", "comms_events", "intervals")

INSERT = {
    "readings": "INSERT INTO readings(ts, series, value, quality, reason, mono, source_ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "comms_events": "INSERT INTO comms_events(ts, device, state, reason, mono) "
    "VALUES (?, ?, ?, ?, ?)",
    "intervals": "INSERT INTO intervals(machine, start, end, data) VALUES (?, ?, ?, ?)",
}


class SeriesIds:
    """(device, tag) -> series id, cached; new pairs are inserted in the caller's transaction."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}

    def load(self, con: sqlite3.Connection) -> None:
        """Fill the cache from the table (at open)."""
        self._ids = {
            (d, t): int(i) for i, d, t in con.execute("SELECT id, device, tag FROM series")
        }

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction may have discarded new ids)."""
        self._ids.clear()

    def rows(
        self, con: sqlite3.Connection, readings: Sequence[Reading]
    ) -> list[tuple[object, ...]]:
        """Insert rows for readings; call inside a transaction."""
        # Hot path (hundreds of thousands of rows/s): plain loop, no per-row helper calls.
        ids = self._ids
        codes = QUALITY_CODES
        dumps = json.dumps
        out: list[tuple[object, ...]] = []
        append = out.append
        for r in readings:
            key = (r.device, r.tag)
            sid = ids.get(key)
            if sid is None:
                sid = self._new(con, key)
            value = r.value
            if value.__class__ is list:
                value = dumps(value)
            append(
                (r.ts, sid, value, codes[r.quality.value], r.reason or None, r.mono, r.source_ts)
            )
        return out

    def _new(self, con: sqlite3.Connection, key: tuple[str, str]) -> int:
        con.execute("INSERT OR IGNORE INTO series(device, tag) VALUES (?, ?)", key)
        sid = int(
            con.execute("SELECT id FROM series WHERE device = ? AND tag = ?", key).fetchone()[0]
        )
        self._ids[key] = sid
        return sid


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
