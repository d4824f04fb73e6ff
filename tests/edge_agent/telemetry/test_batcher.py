"""Tests for per-device batching: one message per device per publish interval."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from edge_agent.model import Quality
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine, TelemetryMessage
from edge_agent.telemetry.batcher import DeviceBatch, encode_value
from tests.edge_agent.telemetry.helpers import rd, samples_of, tags_of

Check = Callable[[list[TelemetryMessage]], list[dict[str, Any]]]

EVERY = PublishPolicy(mode=PublishMode.EVERY)
CHANGE = PublishPolicy(mode=PublishMode.CHANGE)
AGG = PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=1.0)
NONE = PublishPolicy(mode=PublishMode.NONE)


def two_devices() -> TelemetryEngine:
    return TelemetryEngine(
        {
            ("press1", "temp"): EVERY,
            ("press1", "state"): CHANGE,
            ("press1", "vib"): AGG,
            ("press1", "count"): NONE,
            ("oven", "temp"): EVERY,
        },
        publish_interval_s=5.0,
    )


def test_device_tags_share_one_message(check: Check) -> None:
    """All tags of a device, whatever their mode, travel in one message per interval."""
    eng = two_devices()
    assert eng.due(1000.0) == []
    for i in range(5):
        ts = 1000.1 + i
        eng.ingest(
            [
                rd("temp", 20.0 + i, ts),
                rd("state", "run", ts),
                rd("vib", 0.1 * i, ts),
                rd("count", i, ts),
            ]
        )
        eng.ingest([rd("temp", 100 + i, ts, device="oven")])
        assert eng.due(ts + 0.5) == []
    data = check(eng.due(1005.0))
    assert [d["device"] for d in data] == ["press1", "oven"]
    press, oven = data
    assert tags_of(press) == ["temp", "state"]
    assert len(samples_of([press], "temp")) == 5
    assert len(samples_of([press], "state")) == 1
    assert [w["count"] for w in press["aggregates"]["vib"]] == [1, 1, 1, 1]
    assert "count" not in tags_of(press)
    assert "vib" not in tags_of(press)
    assert [s[1] for s in samples_of([oven], "temp")] == [100, 101, 102, 103, 104]


def test_first_due_flushes_then_once_per_interval(check: Check) -> None:
    """Messages come at most once per aligned interval; nothing pending means no message."""
    eng = two_devices()
    eng.ingest([rd("temp", 1, 1000.2)])
    assert [m.device for m in eng.due(1000.3)] == ["press1"]
    eng.ingest([rd("temp", 2, 1000.4)])
    assert eng.due(1004.99) == []
    (message,) = eng.due(1005.0)
    assert message.values == 1
    assert eng.due(1010.0) == []
    assert eng.stats.messages == 2
    assert eng.stats.values == 2


def test_backwards_clock_step_flushes_and_realigns() -> None:
    """After the clock steps back by more than an interval, due publishes at once."""
    eng = two_devices()
    eng.due(2000.0)
    eng.ingest([rd("temp", 1, 1000.0)])
    assert [m.device for m in eng.due(1000.1)] == ["press1"]
    eng.ingest([rd("temp", 1, 1000.2)])
    assert eng.due(1004.9) == []
    assert len(eng.due(1005.0)) == 1


def test_unknown_devices_and_tags_are_ignored() -> None:
    """Readings of unconfigured devices/tags and `none` tags produce nothing."""
    eng = two_devices()
    eng.ingest(
        [rd("temp", 1, 1000.0, device="ghost"), rd("other", 1, 1000.0), rd("count", 1, 1000.0)]
    )
    assert eng.due(1001.0) == []
    assert eng.stats.ingested == 3


def test_overflow_drops_whole_batches_and_counts_them(check: Check) -> None:
    """Once max_pending_readings samples wait, further batches are dropped and counted."""
    eng = TelemetryEngine({("press1", "temp"): EVERY}, 1.0, max_pending_readings=10)
    eng.ingest([rd("temp", i, 1000.0 + i / 100) for i in range(6)])
    eng.ingest([rd("temp", i, 1000.1 + i / 100) for i in range(6)])  # 6 < 10: accepted
    eng.ingest([rd("temp", i, 1000.2 + i / 100) for i in range(6)])  # 12 >= 10: dropped
    assert eng.stats.dropped_overflow == 6
    assert eng.pending_values == 12
    (data,) = check(eng.due(1001.0))
    assert len(samples_of([data], "temp")) == 12
    eng.ingest([rd("temp", i, 1001.1 + i / 100) for i in range(6)])
    assert eng.stats.dropped_overflow == 6
    assert eng.pending_values == 6


def test_overflow_bound_ignores_aggregate_and_unpublished_readings() -> None:
    """Readings that queue no sample (aggregate, none, unknown) do not use up the bound."""
    eng = TelemetryEngine(
        {("press1", "temp"): EVERY, ("press1", "vib"): AGG, ("press1", "count"): NONE},
        1.0,
        max_pending_readings=5,
    )
    for i in range(20):
        eng.ingest([rd("vib", i, 1000.0 + i / 100), rd("count", i, 1000.0), rd("x", 1, 1000.0)])
    eng.ingest([rd("temp", 1, 1000.5)])
    assert eng.stats.dropped_overflow == 0
    assert eng.pending_values == 1


def test_sample_encoding_is_compact_and_strict_json(check: Check) -> None:
    """Samples are [dt_ms, value(, quality(, reason))] relative to whole-second t0."""
    eng = TelemetryEngine({("press1", "v"): EVERY}, 1.0)
    eng.ingest(
        [
            rd("v", 1.5, 1000.2504),
            rd("v", math.nan, 1000.5),
            rd("v", [1.0, math.inf], 1000.6),
            rd("v", None, 1000.7, quality=Quality.BAD, reason="illegal address"),
            rd("v", 3, 1000.8, quality=Quality.STALE),
        ]
    )
    (data,) = check(eng.due(1001.0))
    assert data == {
        "device": "press1",
        "t0": 1000,
        "samples": [
            [250, {"v": 1.5}],
            [500, {"v": "NaN"}],
            [600, {"v": [1.0, "Infinity"]}],
            [700, {"v": None}, {"v": ["bad", "illegal address"]}],
            [800, {"v": 3}, {"v": "stale"}],
        ],
    }


def test_a_poll_is_one_snapshot_per_read_time(check: Check) -> None:
    """A device's poll becomes one snapshot per block time; issues list only non-good tags."""
    eng = TelemetryEngine({("press1", t): EVERY for t in ("a", "b", "c", "d")}, 1.0)
    eng.ingest(
        [
            rd("a", 1, 1000.1),
            rd("b", 2.5, 1000.1),
            rd("c", None, 1000.1, quality=Quality.BAD, reason="timeout"),
            rd("d", "x", 1000.2),
            rd("unpublished", 9, 1000.2),
        ]
    )
    eng.ingest([rd("a", 3, 1000.6), rd("b", 4, 1000.6)])
    (data,) = check(eng.due(1001.0))
    assert data["samples"] == [
        [100, {"a": 1, "b": 2.5, "c": None}, {"c": ["bad", "timeout"]}],
        [200, {"d": "x"}],
        [600, {"a": 3, "b": 4}],
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, 1.0),
        (-math.inf, "-Infinity"),
        ("x", "x"),
        (True, True),
        (None, None),
        ([1, 2], [1, 2]),
    ],
)
def test_encode_value(value: Any, expected: Any) -> None:
    """encode_value only rewrites non-finite floats, also inside lists."""
    assert encode_value(value) == expected


def test_device_batch_build_empties_it() -> None:
    """build() returns None when empty and leaves nothing behind after a message."""
    batch = DeviceBatch("press1", ["a"])
    assert batch.build(1.0) is None
    sink = batch.add
    sink(rd("a", 1, 1.0))
    batch.add_aggregate("b", {"start": 0.0, "end": 1.0, "count": 1, "good_ratio": 1.0})
    assert batch.pending_values == 2
    message = batch.build(2.0)
    assert message is not None
    assert message.values == 2
    assert batch.pending_values == 0
    assert batch.build(3.0) is None
    sink(rd("a", 2, 3.5))
    assert batch.pending_values == 1


@pytest.mark.parametrize(
    "data",
    [
        {"device": "press1"},
        {"device": "press1", "samples": [[0, {"t": 1}]]},
        {"device": "press1", "t0": 1, "samples": []},
        {"device": "press1", "t0": 1, "samples": [[0, {}]]},
        {"device": "press1", "t0": 1, "samples": [[0.5, {"t": 1}]]},
        {"device": "press1", "t0": 1, "samples": [[0, {"t": 1}, {"t": "good"}]]},
        {"device": "press1", "t0": 1, "samples": [[0, {"t": 1}, {}]]},
        {"device": "press1", "t0": 1, "samples": [[0, {"t": None}, {"t": ["bad", ""]}]]},
        {"device": "press1", "t0": 1, "samples": {"t": [[0, 1]]}},
        {
            "device": "press1",
            "aggregates": {"t": [{"start": 0, "end": 1, "count": 0, "good_ratio": 1}]},
        },
        {
            "device": "press1",
            "aggregates": {"t": [{"start": 0, "end": 1, "count": 1, "good_ratio": 1, "min": 1}]},
        },
        {"device": "press1", "t0": 1, "samples": [[0, {"t": 1}]], "extra": 1},
    ],
)
def test_schema_rejects_malformed_data(data: dict[str, Any], telemetry_validator: Any) -> None:
    """The schema is strict enough to catch empty, mis-shaped or incomplete data parts."""
    with pytest.raises(jsonschema.ValidationError):
        telemetry_validator.validate(data)
