"""What the KPI calculator retains per machine over time: RAM and persisted state (issue 22.9).

One machine polled every 200 ms (5 Hz; wall times jittered by up to 20 ms, the
monotonic time a float with sub-ms noise, as ``time.monotonic()`` gives), driven
the way the runtime drives it: the hour and day windows holding each sample are
opened, ``close_due`` + ``revisions`` run every 10 s. Every 10 simulated minutes
it prints the memory the calculator holds (``tracemalloc``, this process only)
and the size of ``json.dumps(to_state())``, the blob rewritten durably at every
report. Injected clock: 2.5 simulated hours take a few seconds.

``unsynced``: every sample says the wall clock is not synchronised (a gateway
without NTP, this container), so each ``close_due`` rewinds and re-prepares the
whole retained log; the column "rewind peak" is the largest temporary memory of
one ``close_due`` + ``revisions`` (``tracemalloc.reset_peak`` around it), which
grows with the retained horizon and sets the process's RSS high-water mark. It
is quadratic in the horizon: 1.25 hours take a few minutes.

Usage: ``python -m benchmarks.bench_kpi_state [HOURS] [unsynced]``.
"""

from __future__ import annotations

import json
import random
import sys
import time
import tracemalloc

from edge_agent.kpi import KpiProfile, MachineCalculator, Sample
from edge_agent.kpi.calendar import WindowKind, windows_containing
from edge_agent.kpi.samplelog import decode_log

PROFILE = KpiProfile(ideal_cycle_time_s=2.0, micro_stop_threshold_s=60, max_gap_s=10)
T0 = 1_764_806_400.0  # 2025-12-04T00:00:00Z
HZ = 5


def run(hours: float = 2.5, synced: bool = True) -> list[tuple[float, int, int, int, int]]:
    """(minutes, retained samples, traced bytes, state bytes, rewind peak bytes) every 10 min."""
    rnd = random.Random(1)
    calc = MachineCalculator(PROFILE, allowed_lateness_s=120)
    good = total = 0
    rows: list[tuple[float, int, int, int, int]] = []
    peak = 0
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        for i in range(int(hours * 3600 * HZ)):
            t = T0 + i / HZ + rnd.uniform(0, 0.02)
            mono = 1000.0 + t - T0 + rnd.uniform(0, 1e-4)
            run_bit = 0 if (i // HZ) % 600 < 30 else 1  # a 30 s stop every 10 min
            if run_bit and i % (2 * HZ) == 0:
                total += 1
                good += 1
            for kind in (WindowKind.HOUR, WindowKind.DAY):
                for w in windows_containing(PROFILE, kind, t):
                    calc.open_window(*w)
            calc.add(Sample(t=t, run=run_bit, good=good, total=total, mono_s=mono, synced=synced))
            if i % (10 * HZ) == 0:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                calc.close_due(t)
                calc.revisions()
                peak = max(peak, tracemalloc.get_traced_memory()[1] - before)
            if i and i % (600 * HZ) == 0:
                memory = tracemalloc.get_traced_memory()[0] - base
                state = calc.to_state()
                size = len(json.dumps(state))
                rows.append((i / HZ / 60, len(decode_log(state["log"])), memory, size, peak))
                peak = 0
                del state  # measure what the calculator holds, not the last snapshot
    finally:
        tracemalloc.stop()
    return rows


def main() -> None:
    """Print the retention table."""
    hours = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1][0].isdigit() else 2.5
    synced = "unsynced" not in sys.argv[1:]
    c0 = time.process_time()
    rows = run(hours, synced)
    cpu = time.process_time() - c0
    clock = "synchronised" if synced else "NOT synchronised"
    print(
        f"KPI calculator retention, one machine at {HZ} Hz, 1 h revision horizon, clock {clock}"
        f" ({cpu:.1f} s CPU)"
    )
    print(f"{'minutes':>8} {'samples':>8} {'RAM KiB':>9} {'state KiB':>10} {'rewind peak KiB':>16}")
    for minutes, kept, memory, size, peak in rows:
        kib = (memory / 1024, size / 1024, peak / 1024)
        print(f"{minutes:8.0f} {kept:8d} {kib[0]:9.0f} {kib[1]:10.1f} {kib[2]:16.0f}")


if __name__ == "__main__":
    main()
