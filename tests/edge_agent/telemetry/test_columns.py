"""Telemetry of column polls: byte for byte the text the same readings give."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from edge_agent.columns import Column, ColumnPoll
from edge_agent.model import Reading
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine
from edge_agent.telemetry.batcher import DeviceBatch

EVERY = PublishPolicy(mode=PublishMode.EVERY)
CHANGE = PublishPolicy(mode=PublishMode.CHANGE)
AGG = PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=1.0)


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def reference(
    device: str, polls: list[list[Reading]], tags: set[str], extra: dict[str, Any]
) -> str:
    """The ``data`` text as the module docstring specifies it, with the stdlib encoder.

    Each poll of good readings: a new snapshot whenever the reading time changes or a
    tag repeats; readings of other tags left out.
    """
    data: dict[str, Any] = {"device": device}
    kept = [[r for r in poll if r.tag in tags] for poll in polls]
    firsts = [poll[0].ts for poll in polls if poll]
    samples: list[list[Any]] = []
    if firsts:
        t0 = math.floor(min(firsts))
        for poll in kept:
            current: dict[str, Any] = {}
            last: float | None = None
            for r in poll:
                if r.ts != last or r.tag in current:
                    last, current = r.ts, {}
                    samples.append([round((r.ts - t0) * 1000.0), current])
                current[r.tag] = _strict(r.value)
        if samples:
            data["t0"] = t0
            data["samples"] = samples
    data.update(extra)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _col(tags: list[str], values: list[Any], ts: float) -> Column:
    return Column(tuple(tags), values, ts, ts - 1000.0)


TAGS = [f"r{i}" for i in range(5)]
AWKWARD = ["50%", 'q"uote', "back\\slash", "\u00b0C", "%s%%"]
PUBLISHED = [*TAGS, *AWKWARD]

CASES: dict[str, list[ColumnPoll]] = {
    "ints": [ColumnPoll("d", [_col(TAGS, [0, 1, 65535, -32768, 7], 100.25)])],
    "floats": [ColumnPoll("d", [_col(TAGS, [0.1, -2.5, 1e-07, 1e20, 3.0], 100.25)])],
    "mixed numbers": [ColumnPoll("d", [_col(TAGS, [1, 2.5, 3, 4.75, 0], 100.9999)])],
    "non-finite": [ColumnPoll("d", [_col(TAGS, [math.nan, math.inf, -math.inf, 1.0, 2], 100.0)])],
    "bools, strings, lists": [
        ColumnPoll("d", [_col(TAGS, [True, False, "run", [1, 2.5], [math.nan]], 100.0)])
    ],
    "awkward tag names": [
        ColumnPoll(
            "d\u00e9v",
            [_col(AWKWARD, [1, 2, 3, 4, 5], 100.0)],
        )
    ],
    "two blocks at one time": [
        ColumnPoll("d", [_col(TAGS[:2], [1, 2], 100.5), _col(TAGS[2:], [3, 4, 5], 100.5)])
    ],
    "two blocks at two times": [
        ColumnPoll("d", [_col(TAGS[:2], [1, 2], 100.5), _col(TAGS[2:], [3, 4.5, 5], 100.52)])
    ],
    "a tag that is not published": [ColumnPoll("d", [_col([*TAGS, "other"], [1] * 6, 100.5)])],
    "a repeated tag": [ColumnPoll("d", [_col(["r0", "r1", "r0"], [1, 2, 3], 100.5)])],
    "several polls": [
        ColumnPoll("d", [_col(TAGS, [i, i + 1, i + 2, i + 3.5, i], 100.0 + i)]) for i in range(4)
    ],
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("extras", [False, True])
def test_column_text_is_byte_for_byte_the_readings_text(name: str, extras: bool) -> None:
    """Columns and their readings give identical text, and the specified one."""
    polls = CASES[name]
    device = polls[0].device
    units = {"r1": "bar", "r0": "\u00b0C"} if extras else {}
    by_columns = DeviceBatch(device, PUBLISHED, units)
    by_readings = DeviceBatch(device, PUBLISHED, units)
    summary = {"start": 99.0, "end": 100.0, "count": 2, "good_ratio": 1.0, "min": 1.5}
    for poll in polls:
        by_columns.add_poll(poll)
        by_readings.add_poll(list(poll))
    if extras:
        for batch in (by_columns, by_readings):
            batch.add_aggregate("vib", dict(summary))
    a = by_columns.build(200.0, clock_unsynced=extras)
    b = by_readings.build(200.0, clock_unsynced=extras)
    assert a is not None
    assert b is not None
    assert a.text == b.text
    assert a.values == b.values
    extra: dict[str, Any] = {}
    if extras:
        extra = {"aggregates": {"vib": [summary]}, "units": dict(sorted(units.items()))}
        extra["clock_unsynced"] = True
    assert a.text == reference(device, [list(p) for p in polls], set(PUBLISHED), extra)


def test_a_poll_of_unpublished_tags_only_builds_nothing() -> None:
    """No published tag in the columns: no message, as with readings."""
    batch = DeviceBatch("d", ["x"])
    batch.add_poll(ColumnPoll("d", [_col(["a", "b"], [1, 2], 100.0)]))
    assert batch.pending_values == 2  # an upper bound, as documented
    assert batch.build(200.0) is None


def test_the_engine_gives_the_same_messages_for_columns_and_readings() -> None:
    """Every mode: a device of `every` tags takes columns whole, the others per reading."""
    policies = {("all", t): EVERY for t in TAGS}
    policies |= {("mixed", "r0"): EVERY, ("mixed", "r1"): CHANGE, ("mixed", "r2"): AGG}
    engines = [TelemetryEngine(policies, publish_interval_s=1.0) for _ in range(2)]
    texts: list[list[str]] = [[], []]
    for second in range(4):
        for device in ("all", "mixed"):
            values = [second * 3 + i * 0.5 for i in range(len(TAGS))]
            poll = ColumnPoll(device, [_col(TAGS, values, 100.0 + second + 0.25)])
            engines[0].ingest(poll)
            engines[1].ingest(list(poll))
        for engine, out in zip(engines, texts, strict=True):
            out += [m.text for m in engine.due(100.0 + second + 0.9)]
    for engine, out in zip(engines, texts, strict=True):
        out += [m.text for m in engine.flush(110.0)]
    assert texts[0] == texts[1]
    assert any('"aggregates"' in t for t in texts[0])
    assert engines[0].stats == engines[1].stats
