"""Tests for the telemetry engine's per-mode state machines (pure, injected time)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from edge_agent.model import Quality, Value
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine, TelemetryMessage
from tests.edge_agent.telemetry.helpers import rd, samples_of, windows_of

Check = Callable[[list[TelemetryMessage]], list[dict[str, Any]]]

EVERY = PublishPolicy(mode=PublishMode.EVERY)
BAD = Quality.BAD


def engine(policy: PublishPolicy, *, interval: float = 1.0, **kw: Any) -> TelemetryEngine:
    return TelemetryEngine({("press1", "x"): policy}, interval, **kw)


def run_values(
    policy: PublishPolicy, values: list[Value], check: Check, *, step: float = 1.0
) -> list[Any]:
    """Feed one value per `step` seconds, collect every message, return published values."""
    eng = engine(policy, interval=step)
    msgs: list[TelemetryMessage] = []
    for i, v in enumerate(values):
        eng.ingest([rd("x", v, 1000.0 + i * step)])
        msgs += eng.due(1000.0 + i * step + step / 2)
    msgs += eng.flush(1e6)
    return [s[1] for s in samples_of(check(msgs), "x")]


def test_every_delivers_every_poll_in_order(check: Check) -> None:
    """Under `every`, ten polls within one interval all reach the one message, bad ones too."""
    eng = engine(EVERY, interval=1.0)
    assert eng.due(1000.0) == []  # nothing pending: no empty message
    readings = [rd("x", i, 1000.05 + i / 10) for i in range(10)]
    readings[4] = rd("x", None, 1000.45, quality=BAD, reason="timeout")
    for r in readings:
        eng.ingest([r])
        assert eng.due(r.ts) == []
    data = check(eng.due(1001.0))
    assert len(data) == 1
    got = samples_of(data, "x")
    assert [g[1] for g in got] == [0, 1, 2, 3, None, 5, 6, 7, 8, 9]
    assert [g[2] for g in got] == ["good"] * 4 + ["bad"] + ["good"] * 5
    assert data[0]["samples"][4] == [450, {"x": None}, {"x": ["bad", "timeout"]}]
    assert got[9][0] == pytest.approx(1000.95, abs=1e-6)


def test_change_absolute_deadband(check: Check) -> None:
    """`change` publishes only moves of more than the deadband from the last published value."""
    policy = PublishPolicy(mode=PublishMode.CHANGE, deadband=0.5)
    values: list[Value] = [10.0, 10.3, 10.5, 10.6, 10.2, 11.0, 11.2, 11.2, 9.0]
    assert run_values(policy, values, check) == [10.0, 10.6, 11.2, 9.0]


def test_change_percent_deadband(check: Check) -> None:
    """`deadband_percent` is relative to the absolute last published value."""
    policy = PublishPolicy(mode=PublishMode.CHANGE, deadband_percent=10.0)
    values: list[Value] = [100, 109, 110, 111, -10, -11, -12, 0, 0, 1]
    assert run_values(policy, values, check) == [100, 111, -10, -12, 0, 1]


def test_change_zero_deadband_publishes_any_change(check: Check) -> None:
    """With the default deadband of 0 every different value is published, repeats are not."""
    policy = PublishPolicy(mode=PublishMode.CHANGE)
    assert run_values(policy, [1, 1, 2, 2, 2, 1], check) == [1, 2, 1]


def test_change_heartbeat_confirms_flat_value(check: Check) -> None:
    """A flat value is republished once `heartbeat_s` of reading time has passed."""
    policy = PublishPolicy(mode=PublishMode.CHANGE, heartbeat_s=3.0)
    eng = engine(policy)
    msgs: list[TelemetryMessage] = []
    for i in range(10):
        eng.ingest([rd("x", 5, 1000.0 + i)])
        msgs += eng.due(1000.5 + i)
    got = samples_of(check(msgs), "x")
    assert [round(g[0]) for g in got] == [1000, 1003, 1006, 1009]


def test_change_heartbeat_rearms_after_clock_steps_back(check: Check) -> None:
    """A reading older than the last publication (clock stepped back) is published."""
    eng = engine(PublishPolicy(mode=PublishMode.CHANGE, heartbeat_s=60.0))
    eng.ingest([rd("x", 5, 2000.0), rd("x", 5, 2001.0), rd("x", 5, 1000.0)])
    got = samples_of(check(eng.flush(2001.0)), "x")
    assert [g[0] for g in got] == [2000.0, 1000.0]


def test_change_reports_quality_changes(check: Check) -> None:
    """Good -> bad -> bad -> good is published as three samples even within the deadband."""
    eng = engine(PublishPolicy(mode=PublishMode.CHANGE, deadband=100.0))
    eng.ingest(
        [
            rd("x", 1.0, 1000.0),
            rd("x", None, 1001.0, quality=BAD, reason="timeout"),
            rd("x", None, 1002.0, quality=BAD, reason="timeout"),
            rd("x", 1.0, 1003.0),
            rd("x", None, 1004.0, quality=Quality.STALE),
        ]
    )
    got = samples_of(check(eng.flush(1005.0)), "x")
    assert [(round(g[0]), g[2]) for g in got] == [
        (1000, "good"),
        (1001, "bad"),
        (1003, "good"),
        (1004, "stale"),
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["idle", "idle", "run", "run", "idle"], ["idle", "run", "idle"]),
        ([True, True, False, False, True], [True, False, True]),
        ([[1, 2], [1, 2], [1, 3]], [[1, 2], [1, 3]]),
        ([1, True, 1.0], [1, True, 1.0]),
    ],
)
def test_change_non_numeric_publishes_any_change(
    values: list[Value], expected: list[Value], check: Check
) -> None:
    """Strings, bools, lists (and type switches) ignore the deadband: any change publishes."""
    policy = PublishPolicy(mode=PublishMode.CHANGE, deadband=10.0)
    assert run_values(policy, values, check) == expected


def test_change_nan_is_published_once_and_encoded(check: Check) -> None:
    """NaN after a number publishes once as "NaN"; a following number publishes again."""
    policy = PublishPolicy(mode=PublishMode.CHANGE, deadband=10.0)
    nan = math.nan
    got = run_values(policy, [1.0, nan, nan, 2.0, math.inf, math.inf, -math.inf], check)
    assert got == [1.0, "NaN", 2.0, "Infinity", "-Infinity"]


def test_aggregate_window_statistics(check: Check) -> None:
    """A 10 s window reports exact min/max/mean/last/count/good_ratio of a known sequence."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0))
    values: list[Value] = [4.0, 2.0, None, 8.0, 6.0]
    readings = [
        rd("x", v, 1000.0 + 2 * i, quality=BAD if v is None else Quality.GOOD)
        for i, v in enumerate(values)
    ]
    eng.ingest(readings)
    assert eng.due(1009.9) == []
    eng.ingest([rd("x", 7.0, 1010.0)])  # exactly the window end: opens the next window
    data = check(eng.due(1010.0))
    assert windows_of(data, "x") == [
        {
            "start": 1000.0,
            "end": 1010.0,
            "count": 5,
            "good_ratio": 0.8,
            "last": 6.0,
            "min": 2.0,
            "max": 8.0,
            "mean": 5.0,
        }
    ]
    assert "samples" not in data[0]
    # The reading at 1010.0 is in [1010, 1020); due closes it after end + grace, and
    # publishes it on the next interval boundary.
    assert eng.due(1020.4) == []
    data = check(eng.due(1021.0))
    assert windows_of(data, "x") == [
        {
            "start": 1010.0,
            "end": 1020.0,
            "count": 1,
            "good_ratio": 1.0,
            "last": 7.0,
            "min": 7.0,
            "max": 7.0,
            "mean": 7.0,
        }
    ]


def test_aggregate_windows_are_aligned_to_the_epoch(check: Check) -> None:
    """Windows start at multiples of aggregate_s whatever the first reading time."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=60.0))
    eng.ingest([rd("x", 1, 1_764_190_833.25), rd("x", 3, 1_764_190_899.0)])
    data = check(eng.flush(1_764_190_900.0))
    starts = [(w["start"], w["end"], w["count"]) for w in windows_of(data, "x")]
    assert starts == [
        (1_764_190_800.0, 1_764_190_860.0, 1),
        (1_764_190_860.0, 1_764_190_900.0, 1),
    ]


def test_aggregate_non_numeric_reports_last_and_count_only(check: Check) -> None:
    """String and bool windows carry last/count/good_ratio but no min/max/mean."""
    eng = TelemetryEngine(
        {
            ("press1", "mode"): PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0),
            ("press1", "flag"): PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0),
        },
        1.0,
    )
    eng.ingest([rd("mode", "run", 1000.0), rd("mode", "idle", 1001.0)])
    eng.ingest([rd("flag", True, 1000.0), rd("flag", None, 1001.0, quality=BAD)])
    data = check(eng.due(1011.0))
    assert windows_of(data, "mode") == [
        {"start": 1000.0, "end": 1010.0, "count": 2, "good_ratio": 1.0, "last": "idle"}
    ]
    assert windows_of(data, "flag") == [
        {"start": 1000.0, "end": 1010.0, "count": 2, "good_ratio": 0.5, "last": True}
    ]


def test_aggregate_all_bad_window_has_no_value_fields(check: Check) -> None:
    """A window with only bad readings reports count and good_ratio 0."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=5.0))
    eng.ingest([rd("x", None, 1000.0 + i, quality=BAD) for i in range(3)])
    data = check(eng.due(1006.0))
    assert windows_of(data, "x") == [
        {"start": 1000.0, "end": 1005.0, "count": 3, "good_ratio": 0.0}
    ]


def test_aggregate_excludes_non_finite_from_statistics(check: Check) -> None:
    """NaN and infinities count as readings but stay out of min/max/mean."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=5.0))
    eng.ingest([rd("x", 1.0, 1000.0), rd("x", math.nan, 1001.0), rd("x", math.inf, 1002.0)])
    (window,) = windows_of(check(eng.due(1006.0)), "x")
    assert window == {
        "start": 1000.0,
        "end": 1005.0,
        "count": 3,
        "good_ratio": 1.0,
        "last": "Infinity",
        "min": 1.0,
        "max": 1.0,
        "mean": 1.0,
    }


def test_aggregate_late_reading_dropped_and_counted(check: Check) -> None:
    """A reading for a window already closed by due (within the grace) is dropped and counted."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0), aggregate_grace_s=0.5)
    eng.ingest([rd("x", 1, 1005.0), rd("x", 2, 1010.2)])
    eng.ingest([rd("x", 99, 1009.8)])
    assert eng.stats.dropped_late == 1
    data = check(eng.flush(1020.0))
    assert [w["count"] for w in windows_of(data, "x")] == [1, 1]
    assert all(w.get("max") != 99 for w in windows_of(data, "x"))


def test_aggregate_clock_step_back_starts_new_window(check: Check) -> None:
    """A reading far older than the open window (clock stepped back) opens a window for it."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0))
    eng.ingest([rd("x", 1, 5005.0), rd("x", 2, 1001.0)])
    data = check(eng.flush(1010.0))
    assert [(w["start"], w["count"]) for w in windows_of(data, "x")] == [(5000.0, 1), (1000.0, 1)]
    assert eng.stats.dropped_late == 0


def test_flush_reports_open_window_as_partial(check: Check) -> None:
    """At shutdown an open window is reported with end = now and partial = true."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=60.0))
    eng.ingest([rd("x", 1.5, 1200.0), rd("x", 2.5, 1210.0)])
    (window,) = windows_of(check(eng.flush(1215.0)), "x")
    assert window == {
        "start": 1200.0,
        "end": 1215.0,
        "count": 2,
        "good_ratio": 1.0,
        "last": 2.5,
        "min": 1.5,
        "max": 2.5,
        "mean": 2.0,
        "partial": True,
    }
    assert eng.flush(1216.0) == []


def test_aggregate_reading_after_due_closed_its_window_is_late(check: Check) -> None:
    """A reading for a window that due() already closed is dropped, never a second window."""
    eng = engine(PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0))
    eng.ingest([rd("x", 1.0, 1001.0)])
    first = windows_of(check(eng.due(1011.0)), "x")
    assert [(w["start"], w["count"]) for w in first] == [(1000.0, 1)]
    eng.ingest([rd("x", 50.0, 1009.0), rd("x", 2.0, 1012.0)])
    assert eng.stats.dropped_late == 1
    rest = windows_of(check(eng.flush(1030.0)), "x")
    assert [(w["start"], w["count"], w["max"]) for w in rest] == [(1010.0, 1, 2.0)]


def test_iter_due_builds_one_device_message_at_a_time() -> None:
    """iter_due encodes a device's values only when its message is taken (bounded peak memory)."""
    policies = {(dev, "t"): EVERY for dev in ("d1", "d2", "d3")}
    eng = TelemetryEngine(policies, publish_interval_s=1.0)
    eng.ingest([rd("t", 1.0, 0.5, device="d1")])
    eng.ingest([rd("t", 2.0, 0.5, device="d2")])
    eng.ingest([rd("t", 3.0, 0.5, device="d3")])
    assert eng.pending_values == 3
    it = eng.iter_due(1.0)
    first = next(it)
    assert first.device == "d1"
    assert eng.pending_values == 2  # d2 and d3 not encoded yet
    rest = list(it)
    assert [m.device for m in rest] == ["d2", "d3"]
    assert eng.pending_values == 0
    assert eng.due(1.5) == []  # same interval: nothing more
