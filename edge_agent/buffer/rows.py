"""Row conversion and insertion for the buffer's batched tables (readings, comms events, intervals).

Turns model objects into the rows the writer inserts: readings refer to a
``series`` row per (device, tag) (cached ids, created inside the caller's
transaction), quality is stored as a small integer code, list values as JSON
text. :meth:`SeriesIds.insert` writes readings with multi-row ``INSERT``
statements that bind no NULLs for the common row and a block read's time once,
in arrival order (rowid order stays arrival order). Runs on the writer thread
only; no I/O besides the statements it is asked to run in the caller's
transaction, no threads, no state except the id cache.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge_agent.buffer.schema import QUALITY_CODES
from edge_agent.model import CommsEvent, Quality, Reading

_GOOD = Quality.GOOD

TABLES = ("readings", "comms_events", "intervals", "samples")

INSERT = {
    "readings": "INSERT INTO readings(ts, series, value, quality, reason, mono, source_ts) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "comms_events": "INSERT INTO comms_events(ts, device, state, reason, mono) "
    "VALUES (?, ?, ?, ?, ?)",
    "intervals": "INSERT INTO intervals(machine, start, end, data) VALUES (?, ?, ?, ?)",
    "samples": "INSERT INTO samples(machine, n, ts, data) VALUES (?, ?, ?, ?)",
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


_DEVICE = operator.attrgetter("device")
_TAG = operator.attrgetter("tag")
_VALUE = operator.attrgetter("value")
_TS = operator.attrgetter("ts")
_MONO = operator.attrgetter("mono")
_QUALITY = operator.attrgetter("quality")
_REASON = operator.attrgetter("reason")
_SOURCE_TS = operator.attrgetter("source_ts")
_PLAIN_TYPES = {int, float, str}
_RUN_KEY = operator.attrgetter("device", "ts", "mono")
# Rows per statement of a run; 2 + 2 x 500 parameters, far below SQLite's limit.
_RUN_ROWS_MAX = 500


@functools.lru_cache(maxsize=256)
def _run_statement(rows: int) -> str:
    """INSERT of ``rows`` plain readings sharing ts (?1) and mono (?2)."""
    values = ",".join(f"(?1, ?{2 * i + 3}, ?{2 * i + 4}, 0, ?2)" for i in range(rows))
    return f"INSERT INTO readings(ts, series, value, quality, mono) VALUES {values}"  # noqa: S608 - placeholders only


class SeriesIds:
    """(device, tag) -> series id, cached; new pairs are inserted in the caller's transaction."""

    def __init__(self) -> None:
        # device -> tag -> id: one dict look-up per device change, one per reading.
        self._ids: dict[str, dict[str, int]] = {}
        # (device, tag) -> id, the same ids: for the all-plain path's C-level look-ups.
        self._pairs: dict[tuple[str, str], int] = {}

    def load(self, con: sqlite3.Connection) -> None:
        """Fill the cache from the table (at open)."""
        ids: dict[str, dict[str, int]] = {}
        pairs: dict[tuple[str, str], int] = {}
        for i, d, t in con.execute("SELECT id, device, tag FROM series"):
            ids.setdefault(d, {})[t] = pairs[(d, t)] = int(i)
        self._ids, self._pairs = ids, pairs

    def forget(self) -> None:
        """Drop the cache (after a rolled-back transaction may have discarded new ids)."""
        self._ids.clear()
        self._pairs.clear()

    def insert(self, con: sqlite3.Connection, readings: Sequence[Reading]) -> None:
        """Insert the readings' rows in arrival order; call inside a transaction.

        Creates the series rows of new (device, tag) pairs on the way.
        """
        if not self._insert_all_plain(con, readings):
            self._insert_mixed(con, readings)

    def _insert_all_plain(self, con: sqlite3.Connection, readings: Sequence[Reading]) -> bool:
        """Insert a batch whose rows are all plain, a poll at a time; False if one is not.

        The usual batch (good polls of numbers) is checked column by column with C
        loops (``map``, ``list.count``: no Python step per reading, and no enum
        hashing). Each run of readings sharing device, time and monotonic time (a
        block read) is one statement binding those two times once and two
        parameters per row: binding costs about 0.2 us per parameter, more than
        SQLite's own work for the row.
        """
        n = len(readings)
        if (
            list(map(_QUALITY, readings)).count(_GOOD) != n
            or list(map(_REASON, readings)).count("") != n
            or list(map(_SOURCE_TS, readings)).count(None) != n
        ):
            return False
        values = list(map(_VALUE, readings))
        if not set(map(type, values)) <= _PLAIN_TYPES:
            return False  # None, bool or list values: converted row by row
        ids = self._ids
        runs: list[tuple[float, float, list[int], int]] = []  # (ts, mono, series ids, end)
        end = 0
        try:
            for (device, ts, mono), run in itertools.groupby(readings, _RUN_KEY):
                sids = list(map(ids[device].__getitem__, map(_TAG, run)))
                end += len(sids)
                runs.append((ts, mono, sids, end))
        except KeyError:
            return False  # a new series: created row by row
        execute = con.execute
        start = 0
        for ts, mono, sids, end in runs:
            for i in range(0, len(sids), _RUN_ROWS_MAX):
                part = sids[i : i + _RUN_ROWS_MAX]
                k = len(part)
                params: list[object] = [ts, mono, *part, *part]
                params[3::2] = values[start + i : start + i + k]
                params[2::2] = part
                execute(_run_statement(k), params)
            start = end
        return True

    def _insert_mixed(self, con: sqlite3.Connection, readings: Sequence[Reading]) -> None:
        # Row by row (plain loop, no per-row helper calls), runs of each kind batched.
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
        self._ids.setdefault(device, {})[tag] = self._pairs[key] = sid
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
    "samples": list,  # already converted by the caller (sample_row)
}
