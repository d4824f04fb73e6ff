"""Raw values as frames: one ``frames`` row per poll, written and read back as readings.

Writer side (:class:`FrameWriter`, writer thread only): a batch of readings (one or
more polls, arrival order) is cut into runs sharing device, read time and monotonic
time (one block read or notification batch); each run becomes one ``frames`` row
referring to its *layout* (the ordered tag list, one ``layouts`` row per device and tag
list, ids cached) with the values encoded by :mod:`.frames`. ``[storage] raw`` decides
what is stored (:class:`~edge_agent.buffer.config.RawMode`): every run (``blocks``),
only the values (or quality/reason) that changed since the tag's last stored value
(``changes``: the frame keeps its full layout and a bitmap of the positions it holds;
a run without a change writes nothing; after a restart the first poll is stored whole),
or nothing (``none``).

Telemetry cuts (:class:`Cut`, issue 20): a cut queued among the readings is resolved,
in the transaction that stores the frames before it, to the last frame id at that point and how
many values each device's frames held so far (this process). Two cuts bound exactly
the frames of the polls queued between them, which is how a telemetry outbox row
refers to frames instead of carrying its values (:mod:`.telerefs`). Frame ids are
assigned here (``max(id) + 1`` at open), so a cut is known before the commit and
forgotten when the transaction rolls back.

Reader side (:func:`read`): frames of a time range decoded back into
:class:`StoredValue` rows in (time, arrival) order, for export, evidence and tests.
Nothing here commits (the caller's transaction) or starts a thread.
"""

from __future__ import annotations

import json
import operator
import sqlite3
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any, NamedTuple, cast

from edge_agent.buffer import frames
from edge_agent.buffer.config import RawMode
from edge_agent.buffer.schema import QUALITY_CODES
from edge_agent.columns import ColumnPoll
from edge_agent.model import Quality, Reading

INSERT_FRAME = "INSERT INTO frames(id, ts, layout, mono, n, enc, data) VALUES (?, ?, ?, ?, ?, ?, ?)"

_RUN_KEY = operator.attrgetter("device", "ts", "mono")
_TAG = operator.attrgetter("tag")
_VALUE = operator.attrgetter("value")
_QUALITY = operator.attrgetter("quality")
_REASON = operator.attrgetter("reason")
_SOURCE_TS = operator.attrgetter("source_ts")
_GOOD = Quality.GOOD

# A frame's run: device, read time, monotonic time; the frame rows of one insert.
_Key = tuple[str, float, float]
_Rows = list[tuple[int, float, int, float, int, int, bytes]]
# What ``changes`` compares per tag: value type and value, quality code, reason.
_Last = tuple[type, object, int, str]


class Cut:
    """A point in the readings queue, resolved by the transaction storing the frames before it.

    ``at`` is then ``(last frame id, values per device so far)`` (None again if that
    transaction rolls back: a reference resolved in it rolls back too); it stays None when
    the cut cannot be exact (``raw`` is not ``blocks``, the cut was dropped with a
    full queue or a full disk). Queue it with ``put("readings", [cut])``.
    """

    __slots__ = ("at",)
    # What the frame writer's run key reads: a cut is never part of a poll's run.
    device = ts = mono = None

    def __init__(self) -> None:
        self.at: tuple[int, dict[str, int]] | None = None


def _tags_text(tags: Sequence[str]) -> str:
    return json.dumps(list(tags), separators=(",", ":"), ensure_ascii=False)


class FrameWriter:
    """Turns batches of readings into ``frames`` rows by the ``raw`` mode (writer thread).

    Args:
        mode: What to store (``blocks``, ``changes`` or ``none``).
    """

    def __init__(self, mode: RawMode = RawMode.BLOCKS) -> None:
        self.mode = mode
        self._ids: dict[tuple[str, tuple[str, ...]], int] = {}
        # changes: device -> tag -> the last stored (type, value, quality, reason).
        self._last: dict[str, dict[str, _Last]] = {}
        self._next_id = 1
        self._counts: dict[str, int] = {}  # values stored per device, this process
        # Cuts resolved in the open transaction (unresolved again if it rolls back).
        self._cuts: list[Cut] = []
        self._saved: tuple[int, dict[str, int]] = (1, {})

    def load(self, con: sqlite3.Connection) -> None:
        """Fill the layout cache and the next frame id from the tables (at open)."""
        self._ids = {
            (str(device), tuple(json.loads(tags))): int(i)
            for i, device, tags in con.execute("SELECT id, device, tags FROM layouts")
        }
        last = con.execute("SELECT coalesce(max(id), 0) FROM frames").fetchone()[0]
        self._next_id = int(last) + 1

    def forget(self) -> None:
        """Undo the rolled-back transaction: its layouts, changes, ids and cuts are gone."""
        self._ids.clear()
        self._last.clear()
        self._next_id, self._counts = self._saved
        for cut in self._cuts:
            cut.at = None
        self._cuts.clear()

    def committed(self) -> None:
        """The transaction committed: its cuts stay resolved."""
        self._cuts.clear()

    def insert(
        self, con: sqlite3.Connection, readings: Sequence[Reading | ColumnPoll | Cut]
    ) -> int:
        """Insert the frames of ``readings`` (arrival order) in the caller's transaction.

        Items are readings, whole :class:`~edge_agent.columns.ColumnPoll` s (encoded from
        their columns: no reading per value) and cuts.

        :class:`Cut` items among them are resolved by :meth:`committed` (or forgotten
        by :meth:`forget`).

        Returns:
            The number of frames written.
        """
        self._saved = (self._next_id, dict(self._counts))
        if not readings:
            return 0
        if self.mode is RawMode.NONE:
            return 0
        exact = self.mode is RawMode.BLOCKS
        rows: _Rows = []
        for kind, items in groupby(readings, type):
            if kind is Reading:
                for key, group in groupby(items, _RUN_KEY):
                    self._run(con, rows, key, list(group))  # type: ignore[arg-type]
            elif kind is ColumnPoll:
                for poll in cast("Iterator[ColumnPoll]", items):
                    for ts, mono, tags, values in _column_runs(poll):
                        self._plain(con, rows, (poll.device, ts, mono), tags, values)
            elif exact:  # cuts
                at = (self._next_id - 1, dict(self._counts))
                for cut in items:
                    cut.at = at  # type: ignore[union-attr]
                    self._cuts.append(cut)  # type: ignore[arg-type]
        if rows:
            con.executemany(INSERT_FRAME, rows)
        return len(rows)

    def _run(self, con: sqlite3.Connection, rows: _Rows, key: _Key, run: list[Reading]) -> None:
        """One run of readings (same device, read time and monotonic time) as a frame."""
        n = len(run)
        qualities = list(map(_QUALITY, run))
        codes = None if qualities.count(_GOOD) == n else [QUALITY_CODES[q.value] for q in qualities]
        reasons = list(map(_REASON, run))
        reason = None if reasons.count("") == n else [r or "" for r in reasons]
        sources = list(map(_SOURCE_TS, run))
        source_ts = None if sources.count(None) == n else sources
        tags = tuple(map(_TAG, run))
        self._plain(con, rows, key, tags, list(map(_VALUE, run)), codes, reason, source_ts)

    def _plain(
        self,
        con: sqlite3.Connection,
        rows: _Rows,
        key: _Key,
        tags: tuple[str, ...],
        values: list[Any],
        codes: list[int] | None = None,
        reason: list[str] | None = None,
        source_ts: list[float | None] | None = None,
    ) -> None:
        """Encode one frame (only what changed with ``raw = "changes"``) and queue its row."""
        device, ts, mono = key
        present: list[bool] | None = None
        if self.mode is RawMode.CHANGES:
            present = self._changed(device, tags, values, codes, reason)
            if not any(present):
                return
            if not all(present):
                values = frames.select(values, present)
                codes = frames.select(codes, present) if codes else None
                reason = frames.select(reason, present) if reason else None
                source_ts = frames.select(source_ts, present) if source_ts else None
        enc, data = frames.encode(values, codes, reason, source_ts, present)
        layout = self._layout(con, device, tags)
        frame = self._next_id
        self._next_id = frame + 1
        held = len(values)
        self._counts[device] = self._counts.get(device, 0) + held
        rows.append((frame, ts, layout, mono, held, enc, data))

    def _changed(
        self,
        device: str,
        tags: Sequence[str],
        values: Sequence[object],
        codes: Sequence[int] | None,
        reasons: Sequence[str] | None,
    ) -> list[bool]:
        last = self._last.get(device)
        if last is None:
            last = self._last[device] = {}
        present: list[bool] = []
        for i, tag in enumerate(tags):
            value = values[i]
            now = (value.__class__, value, codes[i] if codes else 0, reasons[i] if reasons else "")
            if last.get(tag) == now:
                present.append(False)
            else:
                last[tag] = now
                present.append(True)
        return present

    def _layout(self, con: sqlite3.Connection, device: str, tags: tuple[str, ...]) -> int:
        key = (device, tags)
        found = self._ids.get(key)
        if found is not None:
            return found
        text = _tags_text(tags)
        con.execute("INSERT OR IGNORE INTO layouts(device, tags) VALUES (?, ?)", (device, text))
        row = con.execute(
            "SELECT id FROM layouts WHERE device = ? AND tags = ?", (device, text)
        ).fetchone()
        self._ids[key] = int(row[0])
        return self._ids[key]


def _column_runs(poll: ColumnPoll) -> Iterator[tuple[float, float, tuple[str, ...], list[Any]]]:
    """A column poll's runs: consecutive columns read at the same times share one frame."""
    columns = poll.columns
    first = columns[0]
    if len(columns) == 1:
        yield first.ts, first.mono, first.tags, list(first.values)
        return
    tags, values = list(first.tags), list(first.values)
    key = (first.ts, first.mono)
    for c in columns[1:]:
        if (c.ts, c.mono) == key:
            tags += c.tags
            values += c.values
        else:
            yield key[0], key[1], tuple(tags), values
            tags, values, key = list(c.tags), list(c.values), (c.ts, c.mono)
    yield key[0], key[1], tuple(tags), values


class StoredValue(NamedTuple):
    """One value read back from a frame (quality as its stored code)."""

    frame: int
    ts: float
    device: str
    tag: str
    value: object
    quality: int
    reason: str
    source_ts: float | None
    mono: float

    def reading(self) -> Reading:
        """As a :class:`~edge_agent.model.Reading` (unknown quality codes read as bad)."""
        from edge_agent.buffer.schema import QUALITY_NAMES

        quality = Quality(QUALITY_NAMES.get(self.quality, "bad"))
        return Reading(
            self.device,
            self.tag,
            self.value,  # type: ignore[arg-type]  # a stored value is a Reading value
            self.ts,
            self.mono,
            quality,
            self.reason,
            self.source_ts,
        )


def _layouts(
    con: sqlite3.Connection, devices: Sequence[str] | None
) -> dict[int, tuple[str, list[str]]]:
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'layouts'").fetchone() is None:
        return {}  # a database not migrated to schema 5 yet (read-only export)
    if devices is None:
        cur = con.execute("SELECT id, device, tags FROM layouts")
    else:
        marks = ",".join("?" * len(devices))
        cur = con.execute(
            f"SELECT id, device, tags FROM layouts WHERE device IN ({marks})",  # noqa: S608
            list(devices),
        )
    return {int(i): (str(d), list(json.loads(t))) for i, d, t in cur}


def read(
    con: sqlite3.Connection,
    start: float,
    end: float,
    *,
    devices: Sequence[str] | None = None,
    slack_s: float = 0.0,
    order: str = "ts",
) -> Iterator[StoredValue]:
    """Values of the frames with ``start <= ts < end`` (of ``devices``, or all).

    ``frames`` has no ``ts`` index: the rowid range is found by binary search
    (:func:`~edge_agent.buffer.retention.first_id_at`) widened by ``slack_s`` for
    out-of-order arrivals, then filtered. ``order``: ``"ts"`` (time, then arrival)
    or ``"id"`` (arrival).
    """
    from edge_agent.buffer.retention import first_id_at

    layouts = _layouts(con, devices)
    if not layouts:
        return
    first = first_id_at(con, "frames", start - slack_s) or 0
    last = first_id_at(con, "frames", end + slack_s) or 0
    by = "ts, id" if order == "ts" else "id"
    params: list[object] = [first, last, start, end]
    only = ""
    if devices is not None:
        only = f" AND layout IN ({','.join('?' * len(layouts))})"
        params += list(layouts)
    cur = con.execute(
        "SELECT id, ts, layout, mono, enc, data FROM frames "  # noqa: S608 - placeholders only
        f"WHERE id >= ? AND id < ? AND ts >= ? AND ts < ?{only} ORDER BY {by}",
        params,
    )
    for frame, ts, layout, mono, enc, data in cur:
        found = layouts.get(int(layout))
        if found is None:
            continue  # another device's frame
        device, tags = found
        size = len(tags)
        d = frames.decode(int(enc), data, size)
        where = frames.positions(d, size)
        for k, value in enumerate(d.values):
            yield StoredValue(
                int(frame),
                float(ts),
                device,
                tags[where[k]],
                value,
                d.quality[k] if d.quality else 0,
                d.reason[k] if d.reason else "",
                d.source_ts[k] if d.source_ts else None,
                float(mono),
            )
