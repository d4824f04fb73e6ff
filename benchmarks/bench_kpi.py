"""KPI calculator benchmarks: month replay throughput and live per-sample CPU cost.

Prints figures with their method. Samples are generated in memory,
deterministically (no I/O, no randomness). CPU time is measured with
``time.process_time`` (this process only). Bounded to well under 3 minutes.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time

from edge_agent.kpi import KpiProfile, MachineCalculator, Sample, sample_from_json, sample_to_json
from edge_agent.kpi.calendar import (
    WindowKind,
    day_window,
    month_window,
    shift_windows,
    windows_containing,
)
from edge_agent.kpi.engine import evaluate
from edge_agent.kpi.prepare import prepare
from edge_agent.kpi.profile import Shift
from edge_agent.kpi.replay import to_spans
from edge_agent.kpi.samplelog import decode_log

PROFILE = KpiProfile(
    ideal_cycle_time_s=1.8,
    timezone="Europe/Paris",
    max_gap_s=5,
    shifts=(
        Shift(name="A", start_min=6 * 60, end_min=14 * 60),
        Shift(name="B", start_min=14 * 60, end_min=22 * 60),
    ),
)


def month_samples(year: int, month: int, limit: int | None = None) -> list[Sample]:
    """One sample per second over a local month: running, a 150 s stop every hour, 1 part / 2 s."""
    window = month_window(PROFILE, year, month)
    t0 = int(window.start)
    n = int(window.end - window.start) if limit is None else limit
    out: list[Sample] = []
    total = 0
    run = 1
    for i in range(n):
        phase = i % 3600
        if phase == 1800:
            run = 0
        elif phase == 1950:
            run = 1
        if run and i % 2 == 0:
            total += 1
        out.append(
            Sample(
                t=t0 + i, run=run, fault=0 if run else 101, good=total - total // 50, total=total
            )
        )
    return out


def bench_replay() -> None:
    """Replay throughput: prepare + one sweep over a month for month, day and shift windows."""
    c0 = time.process_time()
    samples = month_samples(2024, 5)
    c1 = time.process_time()
    windows = [month_window(PROFILE, 2024, 5)]
    windows += [day_window(PROFILE, dt.date(2024, 5, d)) for d in range(1, 32)]
    windows += shift_windows(PROFILE, dt.date(2024, 5, 1), dt.date(2024, 5, 31))
    points, markers = prepare(PROFILE, samples)
    c2 = time.process_time()
    records = evaluate(PROFILE, points, markers, to_spans(windows))
    c3 = time.process_time()
    n = len(samples)
    month = records[windows[0].name].as_dict()
    print(f"replay: {n:,} samples (1 s, May 2024 Europe/Paris), {len(windows)} windows")
    print("  (windows: the month, 31 local days, 62 shifts)")
    for label, cpu in (
        ("prepare (correct/sort/dedupe)", c2 - c1),
        ("sweep (all windows)", c3 - c2),
        ("replay total (target >= 500,000/s)", c3 - c1),
    ):
        print(f"  {label:36} {cpu:6.2f} s CPU {n / cpu:12,.0f} samples/s")
    print(f"  (not included: building the Sample objects, {1e6 * (c1 - c0) / n:.2f} us each)")
    print(f"  month availability={month['availability']} oee={month['oee']} stops={month['stops']}")


def bench_jsonl(lines: int = 200_000) -> None:
    """Cost of turning JSONL text into samples (the CLI's input stage), per line."""
    text = [json.dumps(sample_to_json(s)) for s in month_samples(2024, 5, limit=lines)]
    c0 = time.process_time()
    parsed = [sample_from_json(json.loads(line)) for line in text]
    cpu = time.process_time() - c0
    size = sum(len(line) + 1 for line in text) / len(text)
    print(f"jsonl input: {len(parsed):,} lines of {size:.0f} bytes, json.loads + sample_from_json")
    print(f"  {1e6 * cpu / len(parsed):8.2f} us CPU per line = {len(parsed) / cpu:12,.0f} lines/s")


def bench_live(hours: int = 24) -> None:
    """Live cost per sample: add(), plus the runtime's timer work (close_due, revisions, so-far)."""
    samples = month_samples(2024, 5, limit=hours * 3600)
    calc = MachineCalculator(PROFILE, allowed_lateness_s=120)
    cal_cpu = add_cpu = timer_cpu = 0.0
    for i, s in enumerate(samples):
        c0 = time.process_time()
        for kind in (WindowKind.HOUR, WindowKind.SHIFT, WindowKind.DAY, WindowKind.MONTH):
            for w in windows_containing(PROFILE, kind, s.t):
                calc.open_window(*w)
        cm = time.process_time()
        calc.add(s)
        c1 = time.process_time()
        cal_cpu += cm - c0
        add_cpu += c1 - cm
        if i % 10 == 0:
            calc.close_due(s.t)
            calc.revisions()
        if i % 60 == 0:
            for name in calc.window_names(final=False):
                calc.record(name, now=s.t)
        timer_cpu += time.process_time() - c1
    n = len(samples)
    print(f"live: {n:,} samples of 1 s ({hours} h), hour/shift/day/month windows, lateness 120 s")
    total = cal_cpu + add_cpu + timer_cpu
    for label, cpu in (
        ("windows_containing x4 + open_window", cal_cpu),
        ("add (live sweeps, events, intervals)", add_cpu),
        ("close_due+revisions/10 s, so-far/60 s", timer_cpu),
        ("total", total),
    ):
        print(f"  {label:38} {1e6 * cpu / n:8.2f} us CPU per sample")
    print(f"  = {100 * total / n:.4f} % of one core at 1 sample/s")
    c0 = time.process_time()
    state = json.dumps(calc.to_state())
    c1 = time.process_time()
    kept = len(decode_log(calc.to_state()["log"]))
    print(
        f"  to_state: {len(state) / 1024:.0f} KiB JSON, {kept} samples kept "
        f"(revision horizon {calc.revision_horizon_s:.0f} s), {1e3 * (c1 - c0):.1f} ms CPU"
    )


def main() -> None:
    """Run the KPI benchmarks and print their figures."""
    print(
        f"KPI benchmarks on {platform.python_implementation()} {platform.python_version()}, "
        f"CPU time via time.process_time"
    )
    bench_replay()
    bench_jsonl()
    bench_live()


if __name__ == "__main__":
    main()
