"""Property tests: `every` loses nothing, `change` is exactly the deadband/heartbeat rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.model import Quality, Reading, Value
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine, TelemetryMessage
from edge_agent.telemetry.batcher import encode_value
from tests.edge_agent.telemetry.helpers import sample_quality

T0_MS = 1_764_190_800_000

values_st: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(0, 65535), max_size=4),
)
quality_st = st.sampled_from(list(Quality))
# (ms since previous reading, value, quality, call due() after it?)
step_st = st.tuples(st.integers(1, 3000), values_st, quality_st, st.booleans())


def build_readings(steps: list[tuple[int, Value, Quality, bool]]) -> list[tuple[Reading, bool]]:
    ms = T0_MS
    out = []
    for delta, value, quality, call_due in steps:
        ms += delta
        reading = Reading(
            device="d", tag="t", value=value, ts=ms / 1000.0, mono=0.0, quality=quality
        )
        out.append((reading, call_due))
    return out


def run(
    policy: PublishPolicy, steps: list[tuple[Reading, bool]], interval: float
) -> list[TelemetryMessage]:
    eng = TelemetryEngine({("d", "t"): policy}, interval)
    messages: list[TelemetryMessage] = []
    for reading, call_due in steps:
        eng.ingest([reading])
        if call_due:
            messages += eng.due(reading.ts)
    last = steps[-1][0].ts if steps else T0_MS / 1000.0
    messages += eng.flush(last + 1.0)
    return messages


def published(messages: list[TelemetryMessage], validator: Any) -> list[tuple[int, Any, str]]:
    """(absolute ms, encoded value, quality) of every sample, schema-validated."""
    out = []
    for message in messages:
        data = message.data
        validator.validate(data)
        for snapshot in data["samples"]:
            if "t" in snapshot[1]:
                quality = sample_quality(snapshot, "t")
                out.append((data["t0"] * 1000 + snapshot[0], snapshot[1]["t"], quality))
    return out


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step_st, max_size=60), interval=st.sampled_from([0.5, 1.0, 7.0]))
def test_every_never_loses_a_reading(
    steps: list[tuple[int, Value, Quality, bool]],
    interval: float,
    telemetry_validator: Any,
) -> None:
    """Under `every` each reading appears exactly once, in order, with its time, value, quality."""
    readings = build_readings(steps)
    messages = run(PublishPolicy(mode=PublishMode.EVERY), readings, interval)
    got = published(messages, telemetry_validator)
    expected = [(round(r.ts * 1000), encode_value(r.value), r.quality.value) for r, _ in readings]
    assert got == expected


numeric_step_st = st.tuples(
    st.integers(1, 3000),
    st.one_of(st.integers(-1000, 1000), st.floats(-1e3, 1e3, allow_nan=False)),
    st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.GOOD, Quality.BAD]),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(numeric_step_st, min_size=1, max_size=80),
    deadband=st.sampled_from([0.0, 0.5, 10.0, 200.0]),
    percent=st.booleans(),
    heartbeat_s=st.sampled_from([0.0, 2.0, 30.0]),
)
def test_change_publishes_exactly_beyond_deadband_or_heartbeat(
    steps: list[tuple[int, Value, Quality, bool]],
    deadband: float,
    percent: bool,
    heartbeat_s: float,
    telemetry_validator: Any,
) -> None:
    """A reading is published iff first, quality/type change, beyond the deadband, or heartbeat."""
    policy = PublishPolicy(
        mode=PublishMode.CHANGE,
        deadband=0.0 if percent else deadband,
        deadband_percent=deadband if percent else None,
        heartbeat_s=heartbeat_s,
    )
    readings = build_readings([(d, None if q is Quality.BAD else v, q, c) for d, v, q, c in steps])
    got = published(run(policy, readings, 1.0), telemetry_validator)
    published_ms = {p[0] for p in got}
    last: Reading | None = None
    for reading, _ in readings:
        is_published = round(reading.ts * 1000) in published_ms
        if last is None:
            assert is_published, "the first reading is always published"
        else:
            heartbeat = heartbeat_s > 0 and reading.ts - last.ts >= heartbeat_s
            changed = (
                reading.quality is not last.quality
                or type(reading.value) is not type(last.value)
                or _beyond(reading.value, last.value, deadband, percent)
            )
            assert is_published == (changed or heartbeat), (reading, last)
        if is_published:
            last = reading
    assert len(got) == len(published_ms)


def _beyond(value: Value, last: Value, deadband: float, percent: bool) -> bool:
    if value is None or last is None:
        return False
    assert isinstance(value, int | float)
    assert isinstance(last, int | float)
    limit = abs(last) * deadband / 100.0 if percent else deadband
    return abs(value - last) > limit


def test_property_helpers_detect_a_lost_reading(
    telemetry_validator: Any,
) -> None:
    """The `every` comparison fails when the engine drops a reading (the test can fail)."""
    readings = build_readings([(10, 1, Quality.GOOD, False), (10, 2, Quality.GOOD, False)])
    eng = TelemetryEngine({("d", "t"): PublishPolicy(mode=PublishMode.EVERY)}, 1.0)
    eng.ingest([readings[0][0]])
    got = published(eng.flush(2e9), telemetry_validator)
    assert got != [(round(r.ts * 1000), r.value, "good") for r, _ in readings]


agg_step_st = st.tuples(
    st.integers(1, 4000),
    st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)),
    st.sampled_from([Quality.GOOD, Quality.GOOD, Quality.BAD]),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(agg_step_st, min_size=1, max_size=80),
    window=st.sampled_from([0.5, 1.0, 5.0]),
    interval=st.sampled_from([1.0, 3.0]),
)
def test_aggregate_windows_match_brute_force(
    steps: list[tuple[int, Value, Quality, bool]],
    window: float,
    interval: float,
    telemetry_validator: Any,
) -> None:
    """Every reading lands in exactly one window [k*L, (k+1)*L) whose statistics are exact."""
    readings = build_readings([(d, None if q is Quality.BAD else v, q, c) for d, v, q, c in steps])
    policy = PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=window)
    eng = TelemetryEngine({("d", "t"): policy}, interval)
    messages: list[TelemetryMessage] = []
    for reading, call_due in readings:
        eng.ingest([reading])
        if call_due:
            messages += eng.due(reading.ts)
    end = readings[-1][0].ts
    messages += eng.flush(end)
    windows = []
    for message in messages:
        telemetry_validator.validate(message.data)
        windows += message.data["aggregates"]["t"]
    assert eng.stats.dropped_late == 0
    assert sum(w["count"] for w in windows) == len(readings)
    starts = [w["start"] for w in windows]
    assert starts == sorted(set(starts))
    for w in windows:
        inside = [r for r, _ in readings if w["start"] <= r.ts < w["start"] + window]
        assert w["count"] == len(inside)
        assert w["start"] == pytest.approx(round(w["start"] / window) * window)
        good = [r.value for r in inside if r.quality is Quality.GOOD]
        assert w["good_ratio"] == pytest.approx(len(good) / len(inside), abs=1e-6)
        if good:
            assert w["last"] == good[-1]
            assert w["min"] == min(good)  # type: ignore[type-var]
            assert w["max"] == max(good)  # type: ignore[type-var]
            assert w["mean"] == pytest.approx(sum(good) / len(good))  # type: ignore[arg-type]
        else:
            assert "min" not in w
            assert "last" not in w


# A poll: (ms since previous poll, [(tag, value, quality)], call due() after it?). Tags
# "a" to "c" are published `every`; "x" is a tag of the device that is not published.
poll_st = st.tuples(
    st.integers(1, 3000),
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "x"]), values_st, quality_st),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(polls=st.lists(poll_st, max_size=30), interval=st.sampled_from([0.5, 1.0, 7.0]))
def test_every_device_polls_are_published_whole_and_exactly(
    polls: list[tuple[int, list[tuple[str, Value, Quality]], bool]],
    interval: float,
    telemetry_validator: Any,
) -> None:
    """Whole polls of an all-`every` device: each published reading once, in order.

    Nothing of the unpublished tag appears; repeated tags within a poll, bad
    qualities and non-finite values included.
    """
    every = PublishPolicy(mode=PublishMode.EVERY)
    eng = TelemetryEngine({("d", t): every for t in "abc"}, interval)
    messages: list[TelemetryMessage] = []
    expected: dict[str, list[tuple[int, Any, str]]] = {}
    ms = T0_MS
    for delta, entries, call_due in polls:
        ms += delta
        poll = [
            Reading(device="d", tag=t, value=v, ts=ms / 1000.0, mono=0.0, quality=q)
            for t, v, q in entries
        ]
        for r in poll:
            if r.tag != "x":
                expected.setdefault(r.tag, []).append((ms, encode_value(r.value), r.quality.value))
        eng.ingest(poll)
        if call_due:
            messages += eng.due(ms / 1000.0)
    messages += eng.flush(ms / 1000.0 + 1.0)
    got: dict[str, list[tuple[int, Any, str]]] = {}
    for message in messages:
        data = message.data
        telemetry_validator.validate(data)
        assert message.values == sum(len(snapshot[1]) for snapshot in data["samples"])
        for snapshot in data["samples"]:
            ms = data["t0"] * 1000 + snapshot[0]
            for tag, value in snapshot[1].items():
                got.setdefault(tag, []).append((ms, value, sample_quality(snapshot, tag)))
    assert got == expected
