"""Open stops in so-far records (kpi-spec §3.6): pending time, never a false dip.

Vectors: tests/cases/kpi/vectors-so-far.json (batch and streaming give the expected
record). Property: with stops of random lengths around the micro-stop threshold, a
so-far record never shows downtime (or a stop count) that a later record of the same
window (so far, final or revised) takes back, and every record keeps the ledger
``planned = run + micro + breakdown + other + pending + unknown``.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.configkit import Issues, Table
from edge_agent.kpi import KpiProfile, MachineCalculator, Sample, compute_records, parse_profile
from edge_agent.kpi.profile import UtcInterval
from edge_agent.kpi.timeutil import parse_instant

from .support import ROOT, mismatches

SO_FAR = ROOT / "tests" / "cases" / "kpi" / "vectors-so-far.json"
VECTORS = json.loads(SO_FAR.read_text(encoding="utf-8"))["vectors"]
T0 = 1_715_594_400  # 2024-05-13T10:00:00Z
THRESHOLD = 60


def _profile(config: dict[str, Any]) -> KpiProfile:
    issues = Issues("vector")
    profile = parse_profile(Table(config, "", issues))
    issues.raise_if_any()
    return profile


def _window(vector: dict[str, Any]) -> tuple[str, float, float]:
    (w,) = vector["report_windows"]
    return w["name"], parse_instant(w["start"]) / 1000, parse_instant(w["end"]) / 1000


def _samples(vector: dict[str, Any]) -> list[Sample]:
    return [
        Sample(
            t=parse_instant(s["t"]) / 1000,
            run=s["run"],
            fault=s["fault"],
            good=s["good"],
            total=s["total"],
        )
        for s in vector["samples"]
    ]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_so_far_vector_batch(vector: dict[str, Any]) -> None:
    """compute_records (so far or final, as the vector says) gives the expected fields."""
    name, start, end = _window(vector)
    so_far = vector["so_far"]
    rec = compute_records(_profile(vector["config"]), _samples(vector), [(name, start, end)],
                          so_far=so_far)[name]  # fmt: skip
    assert rec.final is not so_far
    assert mismatches(vector["expected"][name], rec.as_dict()) == []


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["so_far"]], ids=[v["name"] for v in VECTORS if v["so_far"]]
)
def test_so_far_vector_streaming(vector: dict[str, Any]) -> None:
    """The live calculator's record cut at the vector's "now" gives the same fields."""
    name, start, now = _window(vector)
    calc = MachineCalculator(_profile(vector["config"]), allowed_lateness_s=3600)
    calc.open_window(name, start, start + 3600)
    for s in _samples(vector):
        calc.add(s)
    rec = calc.record(name, now=now)
    assert not rec.final
    assert mismatches(vector["expected"][name], rec.as_dict()) == []


def _ledger_ok(d: dict[str, Any]) -> bool:
    parts = ("running_time_s", "micro_stop_time_s", "downtime_total_s", "pending_stop_s",
             "unknown_time_s")  # fmt: skip
    return abs(d["planned_time_s"] - sum(d[k] for k in parts)) < 0.01


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(5, 120),  # running before the stop (s)
            st.integers(THRESHOLD - 15, THRESHOLD + 15),  # stop length around the threshold
            st.sampled_from([0, 0, 17]),  # fault code
        ),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 10),  # poll step (s)
    st.integers(0, 9),  # how far "now" is past the newest sample (< one step)
    st.booleans(),  # a bad read now and then
)
def test_so_far_records_never_take_downtime_back(
    stops: list[tuple[int, int, int]], step: int, ahead: int, bad_reads: bool
) -> None:
    """Downtime and stop counts of a window only grow from record to record."""
    profile = KpiProfile(
        ideal_cycle_time_s=1.0,
        micro_stop_threshold_s=THRESHOLD,
        max_gap_s=30,
        planned_windows=(UtcInterval(start_ms=T0 * 1000, end_ms=(T0 + 86400) * 1000),),
    )
    calc = MachineCalculator(profile, allowed_lateness_s=5)
    horizon = sum(a + b for a, b, _ in stops)
    window = ("W", float(T0), float(T0 + horizon // 2 + 1))
    calc.open_window(*window)
    timeline: list[tuple[int, int, int]] = []  # (from, to, fault or -1 running)
    t = 0
    for run_s, stop_s, code in stops:
        timeline += [(t, t + run_s, -1), (t + run_s, t + run_s + stop_s, code)]
        t += run_s + stop_s
    end = t + 60
    history: list[dict[str, Any]] = []
    count = 0
    for n, sec in enumerate(range(0, end, step), start=1):
        state = next((c for a, b, c in timeline if a <= sec < b), -1)
        running = state == -1
        count += step if running else 0
        quality = "bad" if bad_reads and n % 7 == 0 else "good"
        calc.add(Sample(t=T0 + sec, run=running, fault=max(state, 0), good=count,
                        total=count, quality=quality))  # fmt: skip
        now = T0 + sec + min(ahead, step - 1)
        for rec in calc.close_due(now) + calc.revisions():
            history.append(rec.as_dict())
        if "W" in calc.window_names(final=False):
            history.append(calc.record("W", now=now).as_dict())
    assert any(r["final"] for r in history)
    for before, after in itertools.pairwise(history):
        assert after["downtime_total_s"] >= before["downtime_total_s"] - 1e-9, (before, after)
        assert after["stops"] >= before["stops"], (before, after)
        assert after["failures"] >= before["failures"], (before, after)
    for rec in history:
        assert _ledger_ok(rec), rec
        if rec["final"]:
            assert rec["pending_stop_s"] == 0
