"""What the calculator retains: bounded by the revision horizon, compact, lossless.

Figures (one machine polled every 200 ms, 18,000 samples in the one-hour horizon):
before, 195 + 96 bytes of RAM per sample and 117 bytes of state JSON per sample;
column-wise storage and row encoding bring that to about 43 + 34 and 39; the packed
log of state version 4 to about 2 bytes of state per sample (docs/bench-kpi.md).
"""

from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from edge_agent.kpi import KpiProfile, MachineCalculator, Sample, compute_records
from edge_agent.kpi.sample import sample_to_json
from edge_agent.kpi.samplelog import (
    BLOCK,
    PointLog,
    SampleLog,
    decode_log,
    encode_log,
    pack_log,
)

T0 = 1_796_000_000.0
PROFILE = KpiProfile(ideal_cycle_time_s=2.0, max_gap_s=10.0)

ODD = [
    Sample(t=T0, run=1, fault=0, good=1, total=1, mono_s=100.25, synced=True),
    Sample(t=T0 + 0.2, quality="bad", run=1, good=9, mono_s=100.45, synced=False),
    Sample(t=T0 + 0.4, run=0, fault=2**40, good=2**64 + 5, total=2**70, synced=None),
    Sample(t=T0 + 0.6, run=1, fault=-3, good=7, total=8, mono_s=None, synced=False),
]


def fields(s: Sample) -> tuple[object, ...]:
    return (s.t_ms, s.run, s.fault, s.good, s.total, s.quality, s.mono_s, s.synced)


def restored(s: Sample) -> tuple[object, ...]:
    """What the object form of state version 2 gave back: a bad sample's fields are zero."""
    if s.is_bad:
        return (s.t_ms, 0, 0, 0, 0, s.quality, s.mono_s, s.synced)
    return fields(s)


def test_sample_log_gives_back_what_was_stored() -> None:
    """Bad samples, missing clocks, counters beyond 64 bits: every field comes back."""
    log = SampleLog(ODD)
    assert len(log) == len(ODD)
    assert [fields(s) for s in log] == [restored(s) for s in ODD]
    assert fields(log[2]) == fields(ODD[2])
    assert [fields(s) for s in log[1:3]] == [restored(s) for s in ODD[1:3]]
    assert log.times() == [s.t_ms for s in ODD]
    assert log.all_synced() is False
    assert SampleLog(ODD[:1]).all_synced() is True


def test_point_log_gives_back_what_was_stored() -> None:
    """Points round-trip, including counters beyond 64 bits, and filter by time."""
    points = [(1, False, 1, 0, 5, 6), (2, True, 0, 0, 0, 0), (3, False, 0, 9, 2**65, 2**66)]
    log = PointLog(points)
    assert list(log) == points
    assert log[2] == points[2]
    assert list(log.after(1)) == points[1:]


def test_state_rows_equal_the_object_form_of_version_2() -> None:
    """Rows decode to the samples the version-2 objects decode to, in a third of the bytes."""
    rows = encode_log(ODD)
    assert [fields(s) for s in decode_log(json.loads(json.dumps(rows)))] == [
        fields(s) for s in decode_log([sample_to_json(s) for s in ODD])
    ]
    assert encode_log(SampleLog(ODD)) == rows


def one_hour(calc: MachineCalculator, start: float, n: int, period: float = 0.2) -> list[Sample]:
    """Running at a 2 s cycle, polled every ``period`` seconds, with a monotonic clock."""
    samples = []
    for i in range(n):
        t = start + i * period
        parts = int((t - T0) // 2)
        s = Sample(t=t, run=1, good=parts, total=parts, mono_s=500.0 + t - T0, synced=True)
        calc.add(s)
        samples.append(s)
    return samples


def test_retained_state_is_compact_and_levels_off_at_the_horizon() -> None:
    """State and memory grow until the revision horizon is full, then stay flat; few bytes each."""
    calc = MachineCalculator(PROFILE, allowed_lateness_s=0, revision_horizon_s=600)
    calc.open_window("day", T0, T0 + 86400)
    sizes = []
    tracemalloc.start()
    try:
        start = T0
        for _ in range(6):  # 6 x 5 min at 5 samples/s; the horizon is 10 min
            one_hour(calc, start, 1500)
            start += 300
            calc.close_due(start)
            sizes.append((len(json.dumps(calc.to_state())), tracemalloc.get_traced_memory()[0]))
    finally:
        tracemalloc.stop()
    retained = len(decode_log(calc.to_state()["log"]))
    assert 3000 <= retained <= 4500  # the horizon (plus up to one checkpoint step)
    state_bytes, memory = sizes[-1]
    # 117 bytes per sample as JSON objects (state v2), 39 as rows (v3), packed (v4): < 8
    assert state_bytes / retained < 8
    # about 290 bytes of RAM per retained sample as objects, 90 as arrays, packed blocks: < 40
    assert memory / retained < 40
    assert sizes[-1][0] < 1.1 * sizes[3][0]  # levelled off


def test_restored_calculator_equals_batch_after_the_compact_round_trip() -> None:
    """Save mid-stream (version 4; old forms 3 and 2), restore, continue: equal to batch."""
    calc = MachineCalculator(PROFILE, allowed_lateness_s=0)
    calc.open_window("w", T0, T0 + 3600)
    first = one_hour(calc, T0, 600)
    state = json.loads(json.dumps(calc.to_state()))
    old = dict(state, version=2, log=[sample_to_json(s) for s in decode_log(state["log"])])
    rows = dict(state, version=3, log=encode_log(decode_log(state["log"])))
    assert state["version"] == 4
    assert isinstance(state["log"], dict)
    results = []
    for saved in (state, old, rows):
        again = MachineCalculator.from_state(PROFILE, saved)
        rest = one_hour(again, T0 + 120, 600)
        results.append(again.record("w").as_dict())
    want = compute_records(PROFILE, first + rest, [("w", T0, T0 + 3600)])["w"]
    assert results[0] == results[1] == results[2] == want.with_meta(final=False).as_dict()


def test_packed_log_round_trips_bit_for_bit() -> None:
    """pack_log keeps every field exactly (bad samples, missing clocks, negative codes)."""
    log = SampleLog([*ODD[:2], ODD[3], *ODD[:2]])
    packed = pack_log(log)
    assert packed is not None
    back = decode_log(json.loads(json.dumps(packed)))
    assert [fields(s) for s in back] == [fields(s) for s in log]
    empty = pack_log(SampleLog())
    assert empty is not None
    assert len(decode_log(empty)) == 0
    assert pack_log(SampleLog(ODD)) is None  # counters beyond int64: the caller keeps rows


def test_packed_log_is_small_for_steady_polling() -> None:
    """An hour of 5 Hz samples with jittered times packs to a few bytes per sample."""
    rnd = random.Random(7)
    log = SampleLog()
    mono, count = 1000.0, 0
    for i in range(18_000):
        mono += 0.2 + rnd.uniform(-0.01, 0.01)
        count += i % 10 == 0
        log.append(
            Sample.at_ms(
                1_764_806_400_000 + round(mono * 1000),
                run=1,
                good=count,
                total=count,
                mono_s=mono,
                synced=True,
            )
        )
    packed = pack_log(log)
    assert packed is not None
    size = len(json.dumps(packed))
    assert size < 12 * len(log), size  # rows: about 39; the monotonic time dominates
    assert [fields(s) for s in decode_log(packed)] == [fields(s) for s in log]


def test_malformed_packed_log_is_refused() -> None:
    packed = pack_log(SampleLog(ODD[:2]))
    assert packed is not None
    block = packed["blocks"][0]
    with pytest.raises(ValueError, match="wrong length"):
        decode_log({"blocks": [{"n": block["n"] + 1, "z": block["z"]}]})
    with pytest.raises(ValueError, match="malformed packed"):
        decode_log({"blocks": [{"n": 1, "z": "not base64!"}]})
    with pytest.raises(ValueError, match="malformed packed"):
        decode_log({"n": 1})


def test_logs_pack_in_blocks_and_read_back_the_same() -> None:
    """Across block boundaries: index, slice, select, after and iteration equal plain lists."""
    samples = [
        Sample(t=T0 + i * 0.2, run=i % 3 != 0, good=i, total=i + i // 7, mono_s=9.5 + i * 0.2)
        for i in range(2 * BLOCK + 100)
    ]
    log = SampleLog(samples)
    assert len(log._blocks) == 2  # packed in memory
    assert [fields(s) for s in log] == [fields(s) for s in samples]
    assert fields(log[5]) == fields(samples[5])
    assert fields(log[-1]) == fields(samples[-1])
    assert [fields(s) for s in log[BLOCK - 3 : BLOCK + 3]] == [
        fields(s) for s in samples[BLOCK - 3 : BLOCK + 3]
    ]
    kept = log.select(i % 2 == 0 for i in range(len(log)))
    assert [fields(s) for s in kept] == [fields(s) for s in samples[::2]]
    assert [fields(s) for s in decode_log(json.loads(json.dumps(pack_log(log))))] == [
        fields(s) for s in samples
    ]
    points = [(i, i % 5 == 0, i % 2, i % 11, i * 3, i * 4) for i in range(2 * BLOCK + 7)]
    plog = PointLog(points)
    assert list(plog) == [(t, bool(b), r, f, g, n) for t, b, r, f, g, n in points]
    assert plog[BLOCK + 1] == points[BLOCK + 1]
    assert list(plog.after(BLOCK)) == list(plog)[BLOCK + 1 :]
