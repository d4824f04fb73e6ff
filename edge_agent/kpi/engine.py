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

:class:`Sweep` is resumable (``feed`` more points later, ``clone`` and
``finish`` a copy for a "so far" record); :func:`evaluate` is the pure,
one-shot form. It does not sort, de-duplicate or correct clocks (``prepare``
does), never reads the clock and does no I/O.

Size: over 400 lines because the streaming calculator's window bookkeeping (open, close,
revise, restore) mutates one state object; the arithmetic is in calculator.py.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.prepare import Marker, Point
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, profile_hash
from edge_agent.kpi.record import KpiRecord

RUNNING, STOPPED, UNKNOWN = 1, 0, -1
FLAG_CALENDAR_24_7 = "calendar_24_7"  # planned around the clock by default (spec §3.4)
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
        "pending",
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
        self.pending = 0
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
        self.pending: dict[str, int] = {}


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

    def __init__(self, profile: KpiProfile, planner: Planner, spans: Sequence[Span] = ()) -> None:
        self.p = profile
        self.planner = planner
        self.accs: dict[str, _Acc] = {}
        self.threshold = round(profile.micro_stop_threshold_s * 1000)
        self.event: _Event | None = None
        self.bounds: list[int] = []
        self.gap = round(profile.max_gap_s * 1000)
        # Windows whose classified stop time changed since the owner last looked.
        self.changed: set[str] = set()
        # Loop state, kept on the object so that feeding can resume.
        self.started = False
        self.seg_start, self.seg_state, self.seg_code = 0, UNKNOWN, 0
        self.base_t = self.base_good = self.base_total = 0
        self.have_base = self.gap_since_base = False
        self.prev_t, self.prev_bad = 0, True
        self.c_lo, self.c_hi = 1, 0
        self.c_targets: list[_Acc] = []
        self.c_planned = False
        for span in spans:
            self.attach(span)

    # -- windows ------------------------------------------------------------
    def attach(self, span: Span) -> None:
        """Start accumulating a window (exact if nothing overlapping it was swept yet)."""
        self.accs[span.name] = _Acc(span.start, span.end)
        self._reindex()

    def detach(self, name: str) -> None:
        """Stop accumulating a window."""
        if self.accs.pop(name, None) is not None:
            self._reindex()
        if self.event is not None:
            self.event.pending.pop(name, None)

    def _reindex(self) -> None:
        self.bounds = sorted({b for a in self.accs.values() for b in (a.start, a.end)})
        self.c_lo, self.c_hi, self.c_targets = 1, 0, []

    # -- time ---------------------------------------------------------------
    def segment(self, a: int, b: int, state: int, code: int) -> None:
        """Apportion ``[a, b)`` in ``state`` to the windows and the open event."""
        if b <= a:
            return
        planner = self.planner
        if state == RUNNING:
            if self.event is not None:
                self.close_event()
            for acc in self.accs.values():
                if acc.start < b and acc.end > a:
                    acc.running += planner.planned_length(max(a, acc.start), min(b, acc.end))
        elif state == UNKNOWN:
            for acc in self.accs.values():
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
            for name, acc in self.accs.items():
                if acc.start < b and acc.end > a:
                    ms = planner.planned_length(max(a, acc.start), min(b, acc.end))
                    if ms:
                        ev.pending[name] = ev.pending.get(name, 0) + ms

    def close_event(self, seen: int | None = None) -> None:
        """Classify the open stop event and book its time and count (spec §3.6, §3.9).

        ``seen``: classify on this planned duration (the part observed up to the last
        sample of an event still open at the end of data) instead of the booked one.
        """
        ev, self.event = self.event, None
        if ev is None or ev.d == 0:
            return
        micro = (ev.d if seen is None else seen) <= self.threshold
        breakdown = not micro and ev.code != 0
        customer = breakdown and self.p.is_customer_code(ev.code)
        key = str(ev.code)
        self.changed.update(ev.pending)
        for name, ms in ev.pending.items():
            acc = self.accs.get(name)
            if acc is None:
                continue
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
        for name, acc in self.accs.items():
            if acc.start <= first < acc.end:
                self.changed.add(name)
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
        targets = [acc for acc in self.accs.values() if acc.start < t <= acc.end]
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
            lo = min((a.start for a in self.accs.values()), default=first_t)
            self.segment(lo, first_t, UNKNOWN, 0)
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

    def finish(self, *, so_far: bool = False, until: int | None = None) -> None:
        """End of data: the last point holds for max_gap, then UNKNOWN to every window end.

        A stop still open is classified by its planned duration observed up to the last
        sample (the bounded hold after it is booked, but does not make it longer).
        ``so_far`` (a record of a window still open): such a stop not longer than the
        micro-stop threshold is booked as ``pending`` (not classified, not counted: spec
        §3.6 "Open stops in so-far records"), and the hold stops at ``until`` (epoch ms,
        "now"; default: the latest window end, the cut), since later time has not passed.
        """
        end = max((a.end for a in self.accs.values()), default=self.prev_t)
        if so_far and until is None:
            until = end
        if not self.started:
            self.segment(min((a.start for a in self.accs.values()), default=0), end, UNKNOWN, 0)
            return
        if self.prev_bad:
            self.segment(self.seg_start, max(end, self.prev_t), self.seg_state, self.seg_code)
            seen = self.event.d if self.event is not None else 0
        else:
            # Observed up to the last sample, then held (bounded) past it: an open stop is
            # classified on what was observed, so the hold never makes it downtime that
            # the next sample takes back (spec §3.6).
            self.segment(self.seg_start, self.prev_t, self.seg_state, self.seg_code)
            seen = self.event.d if self.event is not None else 0
            held = self.prev_t + self.gap
            if until is not None:
                held = max(self.prev_t, min(held, until))
            self.segment(self.prev_t, held, self.seg_state, self.seg_code)
            self.segment(held, end, UNKNOWN, 0)
        ev = self.event
        if ev is not None and so_far and ev.d > 0 and seen <= self.threshold:
            self.event = None
            for name, ms in ev.pending.items():
                acc = self.accs.get(name)
                if acc is not None:
                    acc.pending += ms
        elif ev is not None:
            self.close_event(seen)

    def clone(self, *, only: str | None = None, cut: int | None = None) -> Sweep:
        """An independent copy sharing profile and planner.

        Args:
            only: keep just this window (cheap snapshot for one record).
            cut: end the kept windows at this instant (a "so far" record).
        """
        other = copy.copy(self)
        accs: dict[str, _Acc] = {}
        for name, acc in self.accs.items():
            if only is not None and name != only:
                continue
            dup = copy.copy(acc)
            dup.by_code = dict(acc.by_code)
            dup.flags = set(acc.flags)
            if cut is not None:
                dup.end = max(dup.start, min(dup.end, cut))
            accs[name] = dup
        other.accs = accs
        other.changed = set()
        other._reindex()
        if self.event is not None:
            ev = copy.copy(self.event)
            ev.pending = {k: v for k, v in self.event.pending.items() if k in accs}
            other.event = ev
        return other

    def flag(self, marker: Marker) -> None:
        """Raise a preparation flag (clock step, duplicate) on the windows it touches."""
        for name, acc in self.accs.items():
            if marker.lo <= acc.end and marker.hi >= acc.start and marker.flag not in acc.flags:
                acc.flags.add(marker.flag)
                self.changed.add(name)

    # -- persistence ----------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (membership caches are rebuilt on restore)."""
        ev = self.event
        return {
            "accs": {
                name: {k: getattr(a, k) for k in _Acc.__slots__ if k not in ("by_code", "flags")}
                | {"by_code": dict(a.by_code), "flags": sorted(a.flags)}
                for name, a in self.accs.items()
            },
            "event": None
            if ev is None
            else {"d": ev.d, "code": ev.code, "first": ev.first, "pending": dict(ev.pending)},
            "loop": [
                self.started,
                self.seg_start,
                self.seg_state,
                self.seg_code,
                self.base_t,
                self.base_good,
                self.base_total,
                self.have_base,
                self.gap_since_base,
                self.prev_t,
                self.prev_bad,
            ],
        }

    @classmethod
    def from_state(cls, profile: KpiProfile, planner: Planner, data: dict[str, Any]) -> Sweep:
        """Rebuild a sweep from :meth:`to_state` output."""
        sweep = cls(profile, planner)
        for name, raw in data["accs"].items():
            acc = _Acc(raw["start"], raw["end"])
            for key, value in raw.items():
                setattr(acc, key, value)
            acc.by_code = dict(raw["by_code"])
            acc.flags = set(raw["flags"])
            sweep.accs[name] = acc
        sweep._reindex()
        if data["event"] is not None:
            ev = _Event()
            ev.d, ev.code, ev.first = (
                data["event"]["d"],
                data["event"]["code"],
                data["event"]["first"],
            )
            ev.pending = dict(data["event"]["pending"])
            sweep.event = ev
        (
            sweep.started,
            sweep.seg_start,
            sweep.seg_state,
            sweep.seg_code,
            sweep.base_t,
            sweep.base_good,
            sweep.base_total,
            sweep.have_base,
            sweep.gap_since_base,
            sweep.prev_t,
            sweep.prev_bad,
        ) = data["loop"]
        return sweep

    def records(self, markers: Sequence[Marker] = ()) -> dict[str, KpiRecord]:
        """Build the record of every attached window (call after :meth:`finish`)."""
        profile, planner = self.p, self.planner
        digest = profile_hash(profile)
        out: dict[str, KpiRecord] = {}
        for name, acc in self.accs.items():
            flags = set(acc.flags)
            if profile.always_planned:
                flags.add(FLAG_CALENDAR_24_7)
            for m in markers:
                if m.lo <= acc.end and m.hi >= acc.start:
                    flags.add(m.flag)
            calendar = acc.end - acc.start
            planned = planner.planned_length(acc.start, acc.end)
            scheduled = planner.scheduled_length(acc.start, acc.end)
            out[name] = KpiRecord(
                name=name,
                start=acc.start / 1000,
                end=acc.end / 1000,
                calendar_time_s=calendar / 1000,
                planned_time_s=planned / 1000,
                excluded_time_s=(scheduled - planned) / 1000,
                non_scheduled_time_s=(calendar - scheduled) / 1000,
                unknown_time_s=acc.unknown / 1000,
                running_time_s=acc.running / 1000,
                micro_stop_time_s=acc.micro / 1000,
                pending_stop_s=acc.pending / 1000,
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
                flags=tuple(sorted(flags)),
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
    so_far: bool = False,
    until: int | None = None,
) -> dict[str, KpiRecord]:
    """Compute the component record of every window from prepared points.

    ``so_far`` / ``until``: records of open windows, data known up to ``until`` (epoch
    ms; default the latest window end); see :meth:`Sweep.finish`.
    """
    sweep = Sweep(profile, planner or Planner(profile), spans)
    sweep.feed(points)
    sweep.finish(so_far=so_far, until=until)
    return sweep.records(markers)
