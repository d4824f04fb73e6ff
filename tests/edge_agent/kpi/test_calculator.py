"""The streaming calculator: equal to batch, revisions, so-far records, events, persistence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.kpi import (
    KpiProfile,
    MachineCalculator,
    MachineState,
    Sample,
    StopClass,
    compute_records,
    parse_profile,
    sample_from_json,
)
from edge_agent.kpi.profile import UtcInterval
from edge_agent.kpi.replay import parse_window_arg
from edge_agent.kpi.samplelog import decode_log
from edge_agent.kpi.timeutil import parse_instant

from .support import load_vectors, mismatches, window_bounds

VECTORS = load_vectors()
IDS = [v["name"] for v in VECTORS]


def _profile(config: dict[str, Any]) -> KpiProfile:
    issues = Issues("vector")
    profile = parse_profile(Table(config, "", issues))
    issues.raise_if_any()
    return profile


def _windows(vector: dict[str, Any]) -> list[tuple[str, float, float]]:
    profile = _profile(vector["config"])
    return [
        (w.name, w.start, w.end)
        for w in (
            parse_window_arg(f"{v['name']}={window_bounds(v)}", profile)
            for v in vector["report_windows"]
        )
    ]


def _samples(vector: dict[str, Any]) -> list[Sample]:
    return [sample_from_json(s) for s in vector["samples"]]


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_compute_records_matches_vector(vector: dict[str, Any]) -> None:
    """The batch API reproduces every expected field of every vector."""
    records = compute_records(_profile(vector["config"]), _samples(vector), _windows(vector))
    for name, expected in vector["expected"].items():
        assert mismatches(expected, records[name].as_dict()) == [], name


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_streaming_one_by_one_equals_batch(vector: dict[str, Any]) -> None:
    """Feeding samples one by one with a long lateness gives the batch records as finals."""
    profile = _profile(vector["config"])
    windows = _windows(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=10 * 86400)
    for w in windows:
        calc.open_window(*w)
    for s in _samples(vector):
        calc.add(s)
        assert calc.close_due(s.t) == []
    finals = {r.name: r for r in calc.close_due(max(w[2] for w in windows) + 10 * 86400)}
    batch = compute_records(profile, _samples(vector), windows)
    assert {k: v.as_dict() for k, v in finals.items()} == {k: v.as_dict() for k, v in batch.items()}


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_late_samples_revise_closed_windows(vector: dict[str, Any]) -> None:
    """With zero lateness, windows close early and late samples revise them to the batch result."""
    profile = _profile(vector["config"])
    windows = _windows(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=0, revision_horizon_s=30 * 86400)
    for w in windows:
        calc.open_window(*w)
    latest: dict[str, dict[str, Any]] = {}
    revisions: dict[str, list[int]] = {}
    high = float("-inf")
    for s in _samples(vector):
        calc.add(s)
        high = max(high, s.t)
        for rec in calc.revisions() + calc.close_due(high):
            latest[rec.name] = rec.as_dict()
            revisions.setdefault(rec.name, []).append(rec.revision)
    for rec in calc.close_due(high + 10 * 86400) + calc.revisions():
        latest[rec.name] = rec.as_dict()
        revisions.setdefault(rec.name, []).append(rec.revision)
    batch = compute_records(profile, _samples(vector), windows)
    for name, rec in batch.items():
        got = dict(latest[name])
        assert got.pop("revision") == revisions[name][-1]
        assert revisions[name] == list(range(len(revisions[name])))
        want = rec.as_dict()
        want.pop("revision")
        assert got == want


def test_revision_only_when_result_changes() -> None:
    """A late sample that changes nothing yields no revision; one that does bumps it to 1."""
    vector = next(v for v in VECTORS if v["name"].startswith("V01"))
    profile = _profile(vector["config"])
    samples = _samples(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=60, revision_horizon_s=2 * 86400)
    calc.open_window(*_windows(vector)[0])
    late = samples.pop(4)  # 09:30 restart sample arrives after the window closed
    for s in samples:
        calc.add(s)
    (final,) = calc.close_due(samples[-1].t + 60)
    assert final.final
    assert final.revision == 0
    assert final.downtime_breakdown_s == 3600  # stop held until 10:00 without the 09:30 sample
    calc.add(samples[2])  # exact duplicate: no change
    assert calc.revisions() == []
    calc.add(late)
    (rev,) = calc.revisions()
    assert rev.revision == 1
    assert rev.final
    assert rev.downtime_breakdown_s == 1800
    assert calc.revisions() == []


def test_late_sample_at_a_final_window_end_revises_that_window() -> None:
    """A late count observed exactly at a window's end belongs to it (start < t <= end).

    The rewind marked only windows ending after the late sample's time as changed, so
    the window ending at it kept its final record: the streaming result differed from
    batch (seen as the flaky out_of_plan counts of
    test_properties.py::test_bounded_lateness_with_small_horizon_equals_batch).
    """
    t0 = 1_715_580_000
    profile = KpiProfile(ideal_cycle_time_s=1.0, max_gap_s=3600)  # nothing planned
    windows = [("w0", t0, t0 + 100), ("w1", t0 + 100, t0 + 200)]
    samples = [
        Sample(t=t0 + 10, run=1, good=0, total=0),
        Sample(t=t0 + 150, run=1, good=10, total=10),
        Sample(t=t0 + 100, run=1, good=5, total=5),  # late, at w0's end
    ]
    calc = MachineCalculator(profile, allowed_lateness_s=0)
    for w in windows:
        calc.open_window(*w)
    latest = {}
    for s in samples:
        calc.add(s)
        for rec in calc.close_due(t0 + 150) + calc.revisions():
            latest[rec.name] = rec
    want = compute_records(profile, samples, windows)
    assert latest["w0"].revision == 1
    assert latest["w0"].out_of_plan_total_count == want["w0"].out_of_plan_total_count == 5


def test_in_order_sample_before_a_final_window_end_revises_it() -> None:
    """A sample arriving in order after the wall clock closed its window revises it.

    The runtime closes windows by the wall clock; such a sample took the fast path and
    changed the window's accumulators without a revision.
    """
    t0 = 1_715_580_000
    profile = KpiProfile(ideal_cycle_time_s=1.0, max_gap_s=3600)
    window = ("w0", t0, t0 + 100)
    samples = [
        Sample(t=t0 + 10, run=1, good=0, total=0),
        Sample(t=t0 + 50, run=1, good=3, total=3),
    ]
    calc = MachineCalculator(profile, allowed_lateness_s=0)
    calc.open_window(*window)
    for s in samples:
        calc.add(s)
    (final,) = calc.close_due(t0 + 150)  # the wall clock passed the window's end
    assert final.out_of_plan_total_count == 3
    delayed = Sample(t=t0 + 90, run=1, good=8, total=8)
    calc.add(delayed)
    (rev,) = calc.revisions()
    want = compute_records(profile, [*samples, delayed], [window])["w0"]
    assert rev.revision == 1
    assert rev.out_of_plan_total_count == want.out_of_plan_total_count == 8
    assert calc.revisions() == []


def test_so_far_record_cut_at_now() -> None:
    """``record(name, now=...)`` covers [start, now) only and is not final."""
    vector = next(v for v in VECTORS if v["name"].startswith("V01"))
    calc = MachineCalculator(_profile(vector["config"]), allowed_lateness_s=60)
    calc.open_window(*_windows(vector)[0])
    for s in _samples(vector)[:5]:  # up to 09:30
        calc.add(s)
    now = parse_instant("2024-05-13T09:30:00Z") / 1000
    rec = calc.record("S1", now=now).as_dict()
    assert rec["final"] is False
    assert rec["calendar_time_s"] == 3.5 * 3600
    assert rec["running_time_s"] == 3 * 3600
    assert rec["downtime_breakdown_s"] == 1800
    assert rec["total_count"] == 17250 - 5100 - 4 * 1620 - 810


def test_save_restore_mid_stream_equals_uninterrupted() -> None:
    """A JSON round trip of ``to_state`` mid-stream gives the same records, events, intervals."""
    vector = next(v for v in VECTORS if v["name"].startswith("V02"))
    profile = _profile(vector["config"])
    samples = _samples(vector)
    windows = _windows(vector)

    def run(split: int | None) -> tuple[Any, ...]:
        calc = MachineCalculator(profile, allowed_lateness_s=120)
        for w in windows:
            calc.open_window(*w)
        events, intervals = [], []
        for i, s in enumerate(samples):
            if i == split:
                calc = MachineCalculator.from_state(
                    profile, json.loads(json.dumps(calc.to_state()))
                )
            events += calc.add(s)
            intervals += calc.drain_intervals()
        finals = [r.as_dict() for r in calc.close_due(samples[-1].t + 3600)]
        return finals, events, intervals

    baseline = run(None)
    for split in range(1, len(samples)):
        assert run(split) == baseline


def test_stop_events_started_changed_ended() -> None:
    """V02's stops are published with start/end, planned duration, class and first code."""
    vector = next(v for v in VECTORS if v["name"].startswith("V02"))
    calc = MachineCalculator(_profile(vector["config"]), allowed_lateness_s=60)
    events = [e for s in _samples(vector) for e in calc.add(s)]
    ended = [e for e in events if e.end is not None]
    assert [(e.duration_s, e.cls, e.fault) for e in ended] == [
        (60.0, StopClass.MICRO, 0),
        (120.0, StopClass.MICRO, 12),
        (121.0, StopClass.OTHER, 0),
        (600.0, StopClass.BREAKDOWN, 205),
    ]
    started = [e for e in events if e.end is None and e.duration_s == 0]
    assert len(started) == 4
    changed = [e for e in events if e.end is None and e.duration_s > 0]
    assert [(e.cls, e.fault) for e in changed] == [(StopClass.PENDING, 205)]


def test_state_intervals_are_contiguous_and_bounded_by_max_gap() -> None:
    """Drained intervals tile time without gaps and turn held time beyond max_gap into UNKNOWN."""
    profile = KpiProfile(ideal_cycle_time_s=1.0, max_gap_s=60)
    calc = MachineCalculator(profile, allowed_lateness_s=0)
    for t, run in ((0, 1), (30, 1), (60, 0), (100, 0), (400, 1), (410, 1)):
        calc.add(Sample(t=1_700_000_000 + t, run=run))
    got = [
        (i.start - 1_700_000_000, i.end - 1_700_000_000, i.state) for i in calc.drain_intervals()
    ]
    assert got == [
        (0, 60, MachineState.RUNNING),
        (60, 160, MachineState.STOPPED),
        (160, 400, MachineState.UNKNOWN),
    ]
    assert calc.drain_intervals() == []


def test_pruning_keeps_results_of_retained_windows() -> None:
    """Closing and forgetting old windows prunes the log without changing newer windows."""
    profile = KpiProfile(ideal_cycle_time_s=1.0, max_gap_s=120)
    calc = MachineCalculator(profile, allowed_lateness_s=60, keep_final_s=0)
    t0 = 1_700_000_000
    samples = [
        Sample(t=t0 + 60 * i, run=0 if 50 <= i < 70 else 1, total=60 * i) for i in range(240)
    ]
    for h in range(4):
        calc.open_window(f"h{h}", t0 + 3600 * h, t0 + 3600 * (h + 1))
    for s in samples:
        calc.add(s)
        calc.close_due(s.t)
    assert len(decode_log(calc.to_state()["log"])) < len(samples)
    assert calc.window_names() == ["h3"]
    expected = compute_records(profile, samples, [("h3", t0 + 3 * 3600, t0 + 4 * 3600)])["h3"]
    assert calc.record("h3").as_dict() == expected.with_meta(final=False).as_dict()


def test_state_from_another_profile_is_rejected() -> None:
    """Restoring a state saved under a different profile raises instead of mixing parameters."""
    calc = MachineCalculator(KpiProfile(ideal_cycle_time_s=1.0), allowed_lateness_s=0)
    calc.add(Sample(t=1_700_000_000, run=1))
    state = json.loads(json.dumps(calc.to_state()))
    assert (
        MachineCalculator.from_state(KpiProfile(ideal_cycle_time_s=1.0), state).to_state() == state
    )
    with pytest.raises(ValueError, match="another KPI profile"):
        MachineCalculator.from_state(KpiProfile(ideal_cycle_time_s=2.0), state)


def test_pruning_keeps_pre_sync_samples_by_corrected_time() -> None:
    """Folding old data compares corrected times, so a pre-sync sample (year 2000) still counts."""
    vector = next(v for v in VECTORS if v["name"].startswith("K17"))
    profile = _profile(vector["config"])
    samples = _samples(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=0, revision_horizon_s=600)
    start = parse_instant("2024-05-13T08:30:00Z") / 1000
    calc.open_window("late", start, start + 1800)
    for s in samples:
        calc.add(s)
    (final,) = calc.close_due(start + 3 * 3600)
    assert final.running_time_s == 1800
    assert final.unknown_time_s == 0
    assert "late_data_ignored" not in final.flags
    calc.add(samples[-1])  # an exact duplicate: nothing changes
    assert calc.revisions() == []


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_so_far_records_equal_batch_prefix_for_every_vector(vector: dict[str, Any]) -> None:
    """After each arrival, so-far records (live or rebuilt) equal a batch run of the prefix."""
    profile = _profile(vector["config"])
    windows = _windows(vector)
    samples = _samples(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=30 * 86400)
    for w in windows:
        calc.open_window(*w)
    newest = float("-inf")
    for i, s in enumerate(samples):
        calc.add(s)
        newest = max(newest, s.t)
        for name, start, end in windows:
            got = calc.record(name, now=newest).as_dict()
            cut = max(start + 0.001, min(end, newest))
            want = compute_records(
                profile, samples[: i + 1], [(name, start, cut)], so_far=True, now=newest
            )
            assert got == want[name].as_dict(), (i, name)


def test_sample_beyond_revision_horizon_is_flagged_not_dropped_silently() -> None:
    """A sample older than the horizon is left out, flagged late_data_ignored, and revised."""
    vector = next(v for v in VECTORS if v["name"].startswith("V01"))
    profile = _profile(vector["config"])
    samples = _samples(vector)
    calc = MachineCalculator(profile, allowed_lateness_s=60, revision_horizon_s=3600)
    calc.open_window(*_windows(vector)[0])
    late = samples.pop(4)
    for s in samples:
        calc.add(s)
    (final,) = calc.close_due(samples[-1].t + 60)
    assert "late_data_ignored" not in final.flags
    calc.add(late)
    (rev,) = calc.revisions()
    assert rev.revision == 1
    assert "late_data_ignored" in rev.flags
    assert rev.downtime_breakdown_s == final.downtime_breakdown_s  # numbers unchanged
    assert len(decode_log(calc.to_state()["log"])) < len(samples)


def test_pre_sync_samples_after_reboot_wait_for_the_clock() -> None:
    """After a reboot without RTC, year-2000 samples wait for sync instead of being dropped."""
    t0 = parse_instant("2024-05-13T08:00:00Z") / 1000
    profile = KpiProfile(
        ideal_cycle_time_s=1.0,
        max_gap_s=120,
        planned_windows=(
            UtcInterval(start_ms=round(t0 * 1000), end_ms=round((t0 + 3 * 3600) * 1000)),
        ),
    )
    calc = MachineCalculator(profile, allowed_lateness_s=0, revision_horizon_s=600)
    calc.open_window("h", t0, t0 + 3 * 3600)
    for i in range(61):  # first boot: one synced sample a minute for an hour
        calc.add(Sample(t=t0 + 60 * i, run=1, total=60 * i, mono_s=1000.0 + 60 * i, synced=True))
        calc.close_due(t0 + 60 * i)
    # Reboot at 09:30: the clock reads 2000-01-01 until NTP syncs at 09:40.
    y2k = parse_instant("2000-01-01T00:00:00Z") / 1000
    for i in range(10):
        calc.add(Sample(t=y2k + 60 * i, run=1, total=60 * i, mono_s=5.0 + 60 * i, synced=False))
        calc.close_due(t0 + 3600)
    calc.add(Sample(t=t0 + 6000, run=1, total=600, mono_s=605.0, synced=True))
    rec = calc.record("h", now=t0 + 6000)
    assert "late_data_ignored" not in rec.flags
    # 08:00-09:02 (last sample held 120 s), unknown 09:02-09:30, then the re-anchored
    # samples: mono 5 s is 600 s before the synced 09:40 sample, i.e. 09:30.
    assert rec.running_time_s == 3720 + 600
    assert rec.unknown_time_s == 1680
