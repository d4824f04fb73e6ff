"""The KPI sweep: prepared samples in time order → per-window components.

One pass over time-ordered points (see :mod:`edge_agent.kpi.prepare`) builds
the zero-order-hold timeline with a bounded hold (spec §3.3), stop events
bridged over UNKNOWN and non-planned time and classified on their known
planned portions (§3.6), counter deltas with wrap/reset/anomaly (§3.7) and
their attribution ``start < t ≤ end`` by the instant just before ``t``, and
apportions all of it to every report window at once. Consecutive samples with
the same state and code are merged into one segment, and window membership and
planned-ness are cached over the interval where they cannot change, so the
per-sample cost of steady running is a few comparisons and additions.

It does not sort, de-duplicate or correct clocks (``prepare`` does) and keeps
no state between calls: :func:`evaluate` is a pure function.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.prepare import Marker, Point
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, profile_hash
from edge_agent.kpi.record import KpiRecord

RUNNING, STOPPED, UNKNOWN = 1, 0, -1
NEG_INF = -(2**62)


@dataclass(frozen=True, slots=True)
class Span:
    """A report window to evaluate, in epoch ms."""

    name: str
    start: int
    end: int


class _Acc:
    """Mutable per-window accumulators (milliseconds and counts)."""

    __slots__ = (
        "breakdown",
        "by_code",
        "customer",
        "end",
        "failures",
        "flags",
        "good",
        "micro",
        "micro_stops",
        "oop_good",
        "oop_total",
        "other",
        "provider",
        "running",
        "start",
        "stops",
        "total",
        "ttr",
        "unattributed",
        "unknown",
    )

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end
        self.unknown = self.running = self.micro = self.breakdown = self.other = 0
        self.customer = self.provider = self.ttr = 0
        self.stops = self.micro_stops = self.failures = 0
        self.total = self.good = self.unattributed = self.oop_total = self.oop_good = 0
        self.by_code: dict[str, int] = {}
        self.flags: set[str] = set()


class _Event:
    """An open stop event: planned duration so far, code, first planned instant."""

    __slots__ = ("code", "d", "first", "pending")

    def __init__(self) -> None:
        self.d = 0
        self.code = 0
        self.first: int | None = None
        self.pending: dict[int, int] = {}


def _delta(a: int, b: int, modulus: int, limit: int) -> tuple[int, str | None]:
    """Counter delta and the kind flag of spec §3.7 (None for a normal delta)."""
    if b >= a:
        return b - a, None
    if b + modulus - a <= limit:
        return b + modulus - a, "counter_wrap"
    if b <= limit:
        return b, "counter_reset"
    return 0, "counter_anomaly"


class Sweep:
    """A resumable evaluation pass: ``feed`` points in time order, then ``finish``."""

    def __init__(self, profile: KpiProfile, planner: Planner, spans: Sequence[Span]) -> None:
        self.p = profile
        self.planner = planner
        self.accs = [_Acc(s.start, s.end) for s in spans]
        self.threshold = round(profile.micro_stop_threshold_s * 1000)
        self.event: _Event | None = None
        self.bounds = sorted({b for s in spans for b in (s.start, s.end)})
        self.gap = round(profile.max_gap_s * 1000)
        # Loop state, kept on the object so that feeding can resume.
        self.started = False
        self.seg_start, self.seg_state, self.seg_code = 0, UNKNOWN, 0
        self.base_t = self.base_good = self.base_total = 0
        self.have_base = self.gap_since_base = False
        self.prev_t, self.prev_bad = 0, True
        self.c_lo, self.c_hi = 1, 0
        self.c_targets: list[_Acc] = []
        self.c_planned = False

    # -- time ---------------------------------------------------------------
    def segment(self, a: int, b: int, state: int, code: int) -> None:
        """Apportion ``[a, b)`` in ``state`` to the windows and the open event."""
        if b <= a:
            return
        planner = self.planner
        if state == RUNNING:
            if self.event is not None:
                self.close_event()
            for acc in self.accs:
                if acc.start < b and acc.end > a:
                    acc.running += planner.planned_length(max(a, acc.start), min(b, acc.end))
        elif state == UNKNOWN:
            for acc in self.accs:
                if acc.start < b and acc.end > a:
                    acc.unknown += planner.planned_length(max(a, acc.start), min(b, acc.end))
        else:
            ev = self.event
            if ev is None:
                ev = self.event = _Event()
            spans = planner.spans(a, b)
            if not spans:
                return
            ev.d += sum(e - s for s, e in spans)
            if ev.first is None:
                ev.first = spans[0][0]
            if code and not ev.code:
                ev.code = code
            for i, acc in enumerate(self.accs):
                if acc.start < b and acc.end > a:
                    ms = planner.planned_length(max(a, acc.start), min(b, acc.end))
                    if ms:
                        ev.pending[i] = ev.pending.get(i, 0) + ms

    def close_event(self) -> None:
        """Classify the open stop event and book its time and count (spec §3.6, §3.9)."""
        ev, self.event = self.event, None
        if ev is None or ev.d == 0:
            return
        micro = ev.d <= self.threshold
        breakdown = not micro and ev.code != 0
        customer = breakdown and self.p.is_customer_code(ev.code)
        key = str(ev.code)
        for i, ms in ev.pending.items():
            acc = self.accs[i]
            if micro:
                acc.micro += ms
                continue
            if breakdown:
                acc.breakdown += ms
                if customer:
                    acc.customer += ms
                else:
                    acc.provider += ms
            else:
                acc.other += ms
            acc.by_code[key] = acc.by_code.get(key, 0) + ms
        first = ev.first if ev.first is not None else 0
        for acc in self.accs:
            if acc.start <= first < acc.end:
                if micro:
                    acc.micro_stops += 1
                else:
                    acc.stops += 1
                    if breakdown:
                        acc.failures += 1
                        acc.ttr += ev.d

    # -- counts -------------------------------------------------------------
    def membership(self, t: int) -> tuple[list[_Acc], bool, int, int]:
        """Windows with ``start < t <= end``, planned-ness of ``t-``, and the validity range."""
        targets = [acc for acc in self.accs if acc.start < t <= acc.end]
        planned, hi = self.planner.planned_before(t)
        lo = NEG_INF
        for bnd in self.bounds:
            if bnd < t:
                lo = bnd
            else:
                hi = min(hi, bnd)
                break
        return targets, planned, lo, hi

    # -- the sweep proper ------------------------------------------------------
    def feed(self, points: Sequence[Point]) -> None:
        """Advance over points in strictly increasing time order (resumable)."""
        if not points:
            return
        p = self.p
        gap = self.gap
        modulus = 1 << p.counter_bits
        rate = p.wrap_rate_factor / (p.ideal_cycle_time_s * 1000)
        if not self.started:
            first_t = points[0][0]
            self.segment(min((a.start for a in self.accs), default=first_t), first_t, UNKNOWN, 0)
            self.started = True
            self.seg_start = self.prev_t = first_t
        seg_start, seg_state, seg_code = self.seg_start, self.seg_state, self.seg_code
        base_t, base_good, base_total = self.base_t, self.base_good, self.base_total
        have_base, gap_since_base = self.have_base, self.gap_since_base
        prev_t, prev_bad = self.prev_t, self.prev_bad
        c_lo, c_hi, c_targets, c_planned = self.c_lo, self.c_hi, self.c_targets, self.c_planned
        for t, bad, run, fault, good, total in points:
            # 1. the previous point's hold ends at t (or at prev_t + gap).
            if t - prev_t > gap and not prev_bad:
                self.segment(seg_start, prev_t + gap, seg_state, seg_code)
                seg_start, seg_state, seg_code = prev_t + gap, UNKNOWN, 0
                gap_since_base = True
            if bad:
                state, code = UNKNOWN, 0
                gap_since_base = True
            else:
                state = RUNNING if run else STOPPED
                code = 0 if run else fault
            if state != seg_state or code != seg_code:
                self.segment(seg_start, t, seg_state, seg_code)
                seg_start, seg_state, seg_code = t, state, code
            prev_t, prev_bad = t, bad
            if bad:
                continue
            # 2. counters: a delta observed at t covers (base_t, t] (spec §3.7).
            if have_base:
                if not c_lo < t <= c_hi:
                    c_targets, c_planned, c_lo, c_hi = self.membership(t)
                dg = good - base_good
                dt = total - base_total
                if dg < 0 or dt < 0:
                    limit = max(1, math.ceil(rate * (t - base_t) - 1e-9))
                    dg, kind_g = _delta(base_good, good, modulus, limit)
                    dt, kind_t = _delta(base_total, total, modulus, limit)
                    for acc in c_targets:
                        if kind_g:
                            acc.flags.add(kind_g)
                        if kind_t:
                            acc.flags.add(kind_t)
                if c_planned:
                    for acc in c_targets:
                        acc.total += dt
                        acc.good += dg
                        if gap_since_base:
                            acc.unattributed += dt
                else:
                    for acc in c_targets:
                        acc.oop_total += dt
                        acc.oop_good += dg
            have_base = True
            base_t, base_good, base_total = t, good, total
            gap_since_base = False
        self.seg_start, self.seg_state, self.seg_code = seg_start, seg_state, seg_code
        self.base_t, self.base_good, self.base_total = base_t, base_good, base_total
        self.have_base, self.gap_since_base = have_base, gap_since_base
        self.prev_t, self.prev_bad = prev_t, prev_bad
        self.c_lo, self.c_hi, self.c_targets, self.c_planned = c_lo, c_hi, c_targets, c_planned

    def finish(self) -> None:
        """End of data: the last point holds for max_gap, then UNKNOWN to every window end."""
        end = max((a.end for a in self.accs), default=self.prev_t)
        if not self.started:
            self.segment(min((a.start for a in self.accs), default=0), end, UNKNOWN, 0)
            return
        if self.prev_bad:
            self.segment(self.seg_start, max(end, self.prev_t), self.seg_state, self.seg_code)
        else:
            held = self.prev_t + self.gap
            self.segment(self.seg_start, held, self.seg_state, self.seg_code)
            self.segment(held, end, UNKNOWN, 0)
        if self.event is not None:
            self.close_event()

    def clone(self, cut: int | None = None) -> Sweep:
        """An independent copy (sharing profile and planner); ``cut`` ends its windows early."""
        other = copy.copy(self)
        accs = []
        for acc in self.accs:
            dup = copy.copy(acc)
            dup.by_code = dict(acc.by_code)
            dup.flags = set(acc.flags)
            if cut is not None:
                dup.end = max(dup.start, min(dup.end, cut))
            accs.append(dup)
        other.accs = accs
        index = {id(a): i for i, a in enumerate(self.accs)}
        other.c_targets = [accs[index[id(a)]] for a in self.c_targets]
        if self.event is not None:
            ev = copy.copy(self.event)
            ev.pending = dict(self.event.pending)
            other.event = ev
        return other

    def records(self, spans: Sequence[Span], markers: Sequence[Marker]) -> dict[str, KpiRecord]:
        """Build the records of ``spans`` (same order as the sweep's windows)."""
        profile, planner = self.p, self.planner
        digest = profile_hash(profile)
        out: dict[str, KpiRecord] = {}
        for span, acc in zip(spans, self.accs, strict=True):
            for m in markers:
                if m.lo <= span.end and m.hi >= span.start:
                    acc.flags.add(m.flag)
            calendar = span.end - span.start
            planned = planner.planned_length(span.start, span.end)
            scheduled = planner.scheduled_length(span.start, span.end)
            out[span.name] = KpiRecord(
                name=span.name,
                start=span.start / 1000,
                end=span.end / 1000,
                calendar_time_s=calendar / 1000,
                planned_time_s=planned / 1000,
                excluded_time_s=(scheduled - planned) / 1000,
                non_scheduled_time_s=(calendar - scheduled) / 1000,
                unknown_time_s=acc.unknown / 1000,
                running_time_s=acc.running / 1000,
                micro_stop_time_s=acc.micro / 1000,
                downtime_breakdown_s=acc.breakdown / 1000,
                downtime_other_s=acc.other / 1000,
                downtime_customer_s=acc.customer / 1000,
                downtime_provider_s=acc.provider / 1000,
                ttr_sum_s=acc.ttr / 1000,
                downtime_by_code={k: v / 1000 for k, v in acc.by_code.items()},
                stops=acc.stops,
                micro_stops=acc.micro_stops,
                failures=acc.failures,
                total_count=acc.total,
                good_count=acc.good,
                unattributed_total_count=acc.unattributed,
                out_of_plan_total_count=acc.oop_total,
                out_of_plan_good_count=acc.oop_good,
                flags=tuple(sorted(acc.flags)),
                ideal_cycle_time_s=profile.ideal_cycle_time_s,
                min_coverage=profile.min_coverage,
                spec_version=SPEC_VERSION,
                profile_hash=digest,
            )
        return out


def evaluate(
    profile: KpiProfile,
    points: Sequence[Point],
    markers: Sequence[Marker],
    spans: Sequence[Span],
    *,
    planner: Planner | None = None,
) -> dict[str, KpiRecord]:
    """Compute the component record of every window from prepared points."""
    sweep = Sweep(profile, planner or Planner(profile), spans)
    sweep.feed(points)
    sweep.finish()
    return sweep.records(spans, markers)
