"""Sample JSON round trip and validation; record derivation and aggregation of dicts."""

from __future__ import annotations

import pytest

from edge_agent.kpi import KpiRecord, Sample, aggregate, sample_from_json, sample_to_json


def test_sample_json_round_trip_keeps_milliseconds() -> None:
    """A sample survives JSON with integer-millisecond time and its optional clock fields."""
    raw = {
        "t": "2024-05-13T06:00:00.250Z",
        "run": 1,
        "fault": 7,
        "good": 5,
        "total": 6,
        "mono_s": 12.5,
        "synced": False,
    }
    s = sample_from_json(raw)
    assert s.t_ms == 1_715_580_000_250
    assert sample_to_json(s) == raw
    assert sample_from_json(sample_to_json(s)) == s


def test_bad_sample_needs_only_t() -> None:
    """A bad-quality sample ignores (and does not validate) its untrusted fields."""
    s = sample_from_json({"t": "2024-05-13T06:00:00Z", "quality": "bad", "run": None})
    assert s.is_bad
    assert sample_to_json(s)["quality"] == "bad"


def test_lenient_forms() -> None:
    """``run`` may be a boolean, counters integral floats, and unknown fields are ignored."""
    s = sample_from_json(
        {"t": "2024-05-13T06:00:00+02:00", "run": True, "good": 5.0, "total": 6, "note": "x"}
    )
    assert (s.run, s.good, s.fault) == (1, 5, 0)
    assert s.t_ms == 1_715_572_800_000


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a JSON object"),
        ({"run": 1}, "'t' must be an ISO 8601"),
        ({"t": "2024-05-13T06:00:00"}, "'t' is not an ISO 8601 UTC time with offset"),
        ({"t": "2024-05-13T06:00:00Z", "run": 2}, "'run' must be 0 or 1"),
        ({"t": "2024-05-13T06:00:00Z", "run": 1, "total": 1.5}, "'total' must be an integer"),
        ({"t": "2024-05-13T06:00:00Z", "quality": "meh"}, "'quality' must be 'good' or 'bad'"),
        ({"t": "2024-05-13T06:00:00Z", "mono_s": "1"}, "'mono_s' must be a number"),
        ({"t": "2024-05-13T06:00:00Z", "synced": 1}, "'synced' must be true or false"),
    ],
)
def test_malformed_samples_name_the_field(obj: object, message: str) -> None:
    """Malformed sample objects raise ValueError naming the field."""
    with pytest.raises(ValueError, match=message):
        sample_from_json(obj)


def test_sample_rejects_unknown_quality_in_code() -> None:
    """Constructing a sample in code also checks quality."""
    with pytest.raises(ValueError, match="quality"):
        Sample(t=0.0, quality="unknown")


def _rec(name: str, planned: float, running: float, other: float, total: int) -> KpiRecord:
    return KpiRecord(
        name=name,
        start=0.0,
        end=planned,
        calendar_time_s=planned,
        planned_time_s=planned,
        running_time_s=running,
        downtime_other_s=other,
        downtime_by_code={"0": other} if other else {},
        stops=1 if other else 0,
        total_count=total,
        good_count=total,
        ideal_cycle_time_s=1.0,
    )


def test_aggregate_is_ratio_of_sums_not_mean_of_ratios() -> None:
    """V20: 1 h at A=1 and 4 h at A=0.5 aggregate to A=0.6, not 0.75."""
    s1 = _rec("S1", 3600, 3600, 0, 3600)
    s2 = _rec("S2", 14400, 7200, 7200, 7200)
    assert s1.as_dict()["availability"] == 1.0
    assert s2.as_dict()["availability"] == 0.5
    agg = aggregate([s1, s2])
    assert agg["availability"] == 0.6
    assert agg["oee"] == 0.6
    assert agg["downtime_by_code"] == {"0": 7200.0}
    assert aggregate([s1.as_dict(), s2.as_dict()], ideal_cycle_time_s=1.0) == agg
    with pytest.raises(ValueError, match="ideal_cycle_time_s"):
        aggregate([s1.as_dict()])


def test_null_ratios_for_empty_record() -> None:
    """With no planned time every ratio is null and no_planned_time is flagged."""
    doc = KpiRecord(name="x", start=0.0, end=60.0, calendar_time_s=60.0).as_dict()
    for key in (
        "data_coverage",
        "availability",
        "availability_if_unknown_down",
        "performance",
        "performance_capped",
        "quality",
        "oee",
        "mtbf_s",
        "mttr_s",
        "sla_availability",
        "actual_cycle_time_s",
        "throughput_per_h",
    ):
        assert doc[key] is None, key
    assert doc["flags"] == ["no_planned_time"]
