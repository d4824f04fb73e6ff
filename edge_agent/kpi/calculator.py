"""The per-machine streaming calculator the runtime drives (spec §3.2 streaming).

:class:`MachineCalculator` accepts samples in arrival order and produces
"so far", final and revised :class:`~edge_agent.kpi.record.KpiRecord` for the
report windows the runtime opens, plus live stop events and the state-interval
log. It keeps a bounded log of samples (from the context needed by the oldest
retained window) and evaluates a window by one sweep over the slice of that
log that can influence it. That makes the result *by construction* identical
to :func:`~edge_agent.kpi.replay.compute_records` on the same samples:
order-independent, one-by-one equal to batch, and save/restore equal to an
uninterrupted run (the state is the log plus window bookkeeping).

Each open window also has a live :class:`~edge_agent.kpi.engine.Sweep` fed
with in-order samples, so a "so far" record costs O(1) instead of a re-sweep;
a late, duplicate or pre-sync sample drops the live sweeps, which are rebuilt
from the log when next needed (same result either way).

Guarantees: ``add`` is O(1) per sample (per open window); records are
never silently dropped: a sample arriving after a window was finalised marks
it for re-evaluation and :meth:`revisions` returns a record with a higher
``revision`` when the result changed. Pure: no I/O, no clock reads (time comes
in with samples and the caller's watermark).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.engine import Span, Sweep, evaluate
from edge_agent.kpi.events import LiveTracker, StateInterval, StopEvent
from edge_agent.kpi.prepare import FLAG_CLOCK_STEP, Marker, Point, corrected_times, prepare
from edge_agent.kpi.profile import KpiProfile, profile_hash
from edge_agent.kpi.record import KpiRecord
from edge_agent.kpi.sample import Sample, sample_from_json, sample_to_json
from edge_agent.kpi.timeutil import MS_PER_S

STATE_VERSION = 1
_NEVER = 2**62
# Pruning re-prepares the log (O(log size)): do it at most every 15 min of watermark.
_PRUNE_EVERY_MS = 15 * 60_000
_IDENTITY = ("revision", "final")


@dataclass(slots=True)
class _Window:
    span: Span
    revision: int = 0
    final: bool = False
    tail_open: bool = False
    published: dict[str, Any] = field(default_factory=dict)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in _IDENTITY} == {
        k: v for k, v in b.items() if k not in _IDENTITY
    }


class MachineCalculator:
    """Streaming KPI calculator of one machine.

    Args:
        profile: the machine's calculation profile.
        allowed_lateness_s: how long after its end a window stays open for late
            samples before its final record is produced (at least ``max_gap_s``
            plus the store-and-forward depth is recommended).
        keep_final_s: how long after ``end + allowed_lateness`` a final window is
            retained so that later samples still produce revisions.
    """

    def __init__(
        self, profile: KpiProfile, *, allowed_lateness_s: float, keep_final_s: float = 7 * 86400.0
    ) -> None:
        if allowed_lateness_s < 0 or keep_final_s < 0:
            raise ValueError("allowed_lateness_s and keep_final_s must be >= 0")
        self.profile = profile
        self.allowed_lateness_s = allowed_lateness_s
        self.keep_final_s = keep_final_s
        self._planner = Planner(profile)
        self._log: list[Sample] = []
        self._windows: dict[str, _Window] = {}
        self._prepared: tuple[list[Point], list[Marker]] | None = None
        self._times: list[int] = []
        self._tracker = LiveTracker(profile, self._planner)
        # Earliest sample time added since the last revisions() check.
        self._min_new_t = _NEVER
        self._pruned_at = -_NEVER
        # Live sweeps of open windows, fed in O(1) per in-order sample (see _feed_live).
        self._live: dict[str, Sweep] = {}
        self._live_markers: list[Marker] = []
        self._newest = -_NEVER
        self._prev: Sample | None = None

    # -- input ------------------------------------------------------------------
    def add(self, sample: Sample) -> list[StopEvent]:
        """Take one sample (arrival order); return stop-event updates for publishing."""
        self._log.append(sample)
        self._prepared = None
        self._min_new_t = min(self._min_new_t, sample.t_ms)
        self._feed_live(sample)
        return self._tracker.add(sample)

    def _feed_live(self, s: Sample) -> None:
        """Advance the live sweeps, or drop them when the sample needs a full re-evaluation.

        In-order samples without pending clock correction are fed directly; late,
        duplicate or pre-sync samples invalidate the sweeps, which are rebuilt from
        the log on the next :meth:`record` call. Either way results are identical.
        """
        prev, self._prev = self._prev, s
        in_order = s.t_ms > self._newest
        self._newest = max(self._newest, s.t_ms)
        clock_ok = s.mono_s is None or (
            bool(s.synced) and (prev is None or prev.mono_s is None or bool(prev.synced))
        )
        if not (in_order and clock_ok):
            self._live.clear()
            return
        if not self._live:
            return
        if (
            prev is not None
            and s.mono_s is not None
            and prev.mono_s is not None
            and s.mono_s >= prev.mono_s
        ):
            d_mono = round((s.mono_s - prev.mono_s) * MS_PER_S)
            if abs(s.t_ms - prev.t_ms - d_mono) > round(
                self.profile.clock_step_tolerance_s * MS_PER_S
            ):
                self._live_markers.append(Marker(prev.t_ms, s.t_ms, FLAG_CLOCK_STEP))
        point: Point = (
            (s.t_ms, True, 0, 0, 0, 0)
            if s.is_bad
            else (s.t_ms, False, s.run, s.fault, s.good, s.total)
        )
        batch = [point]
        for sweep in self._live.values():
            sweep.feed(batch)

    def _live_sweep(self, win: _Window) -> Sweep | None:
        """The live sweep of an open window, built from the log when missing."""
        sweep = self._live.get(win.span.name)
        if sweep is not None or win.final:
            return sweep
        prev = self._prev
        if prev is not None and prev.mono_s is not None and not prev.synced:
            return None  # pre-sync samples will move when the clock syncs
        points, markers = self._points()
        lo = self._context_start(points, win.span.start)
        sweep = Sweep(self.profile, self._planner, [win.span])
        sweep.feed(points[lo:])
        self._live[win.span.name] = sweep
        self._live_markers = list(markers)
        return sweep

    def drain_intervals(self) -> list[StateInterval]:
        """Closed state intervals (RUNNING/STOPPED/UNKNOWN) since the last call."""
        return self._tracker.drain()

    # -- windows ----------------------------------------------------------------
    def open_window(self, name: str, start: float, end: float) -> None:
        """Start tracking a report window ``[start, end)`` (epoch seconds); idempotent."""
        if name in self._windows:
            return
        s, e = round(start * MS_PER_S), round(end * MS_PER_S)
        if e <= s:
            raise ValueError(f"window {name!r}: end must be after start")
        self._windows[name] = _Window(Span(name, s, e))

    def window_names(self, *, final: bool | None = None) -> list[str]:
        """Names of the tracked windows: all, or only final (True) / still open (False) ones."""
        return [n for n, w in self._windows.items() if final is None or w.final == final]

    def forget(self, name: str) -> None:
        """Stop tracking a window (no more revisions) and release its samples."""
        self._windows.pop(name, None)
        self._live.pop(name, None)

    def _points(self) -> tuple[list[Point], list[Marker]]:
        if self._prepared is None:
            self._prepared = prepare(self.profile, self._log)
            self._times = [p[0] for p in self._prepared[0]]
        return self._prepared

    def _context_start(self, points: list[Point], start: int) -> int:
        """Index of the last RUNNING point at or before ``start`` (no event spans it)."""
        lo = bisect.bisect_right(self._times, start) - 1
        while lo > 0 and (points[lo][1] or not points[lo][2]):
            lo -= 1
        return max(lo, 0)

    def _evaluate(self, span: Span) -> tuple[KpiRecord, bool]:
        """The record of ``span`` and whether a stop event may still be open at its end."""
        points, markers = self._points()
        lo = self._context_start(points, span.start)
        hi = bisect.bisect_left(self._times, span.end)
        while hi < len(points) and (points[hi][1] or not points[hi][2]):
            hi += 1
        chunk = points[lo : hi + 1]
        rec = evaluate(self.profile, chunk, markers, [span], planner=self._planner)[span.name]
        # Samples after the end can still reclassify an event open at the end (spec §3.6).
        return rec, hi >= len(points)

    def record(self, name: str, *, now: float | None = None) -> KpiRecord:
        """The current ("so far") record of a window, optionally cut at ``now`` (epoch s).

        Raises:
            KeyError: when the window is not tracked.
        """
        win = self._windows[name]
        span = win.span
        cut = None if now is None else max(span.start + 1, min(span.end, round(now * MS_PER_S)))
        if cut is not None:
            span = Span(span.name, span.start, cut)
        sweep = self._live_sweep(win)
        if sweep is not None and (cut is None or cut >= self._newest):
            snapshot = sweep.clone(cut)
            snapshot.finish()
            rec = snapshot.records([span], self._live_markers)[name]
        else:
            rec, _ = self._evaluate(span)
        return rec.with_meta(
            start=win.span.start / MS_PER_S, revision=win.revision, final=win.final
        )

    def close_due(self, watermark: float) -> list[KpiRecord]:
        """Final records of windows whose ``end + allowed_lateness`` <= ``watermark``.

        Also drops final windows older than ``keep_final_s`` and prunes the log.
        """
        wm = round(watermark * MS_PER_S)
        late = round(self.allowed_lateness_s * MS_PER_S)
        out: list[KpiRecord] = []
        for win in self._windows.values():
            if not win.final and win.span.end + late <= wm:
                rec, win.tail_open = self._evaluate(win.span)
                rec = rec.with_meta(final=True, revision=0)
                win.final, win.published = True, rec.as_dict()
                self._live.pop(win.span.name, None)
                out.append(rec)
        keep = round(self.keep_final_s * MS_PER_S)
        for name in [
            n for n, w in self._windows.items() if w.final and w.span.end + late + keep < wm
        ]:
            del self._windows[name]
        if wm - self._pruned_at >= _PRUNE_EVERY_MS:
            self._pruned_at = wm
            self._prune(wm - late - round(self.profile.max_gap_s * MS_PER_S))
        return out

    def revisions(self) -> list[KpiRecord]:
        """Revised records of final windows changed by samples that arrived after closing."""
        out: list[KpiRecord] = []
        earliest, self._min_new_t = self._min_new_t, _NEVER
        if earliest == _NEVER:
            return out
        for win in self._windows.values():
            if not win.final or (earliest >= win.span.end and not win.tail_open):
                continue
            rec, win.tail_open = self._evaluate(win.span)
            rec = rec.with_meta(final=True, revision=win.revision)
            doc = rec.as_dict()
            if _same(doc, win.published):
                continue
            win.revision += 1
            rec = rec.with_meta(revision=win.revision)
            win.published = rec.as_dict()
            out.append(rec)
        return out

    def _prune(self, horizon_ms: int) -> None:
        """Drop samples no retained window (nor the live horizon) can still need."""
        starts = [w.span.start for w in self._windows.values()]
        cutoff = min([*starts, horizon_ms])
        points, _ = self._points()
        i = bisect.bisect_right(self._times, cutoff) - 1
        while i > 0 and (points[i][1] or not points[i][2]):
            i -= 1
        if i <= 0:
            return
        keep_from = points[i][0]
        # Compare corrected times: a pre-sync sample's raw time may be years off.
        if any(s.mono_s is not None for s in self._log):
            times, _ = corrected_times(self.profile, self._log)
        else:
            times = [s.t_ms for s in self._log]
        kept = [s for s, t in zip(self._log, times, strict=True) if t >= keep_from]
        if len(kept) != len(self._log):
            self._log = kept
            self._prepared = None

    # -- persistence --------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot; :meth:`from_state` continues exactly from it."""
        return {
            "version": STATE_VERSION,
            "profile_hash": profile_hash(self.profile),
            "allowed_lateness_s": self.allowed_lateness_s,
            "keep_final_s": self.keep_final_s,
            "log": [sample_to_json(s) for s in self._log],
            "windows": [
                {
                    "name": w.span.name,
                    "start_ms": w.span.start,
                    "end_ms": w.span.end,
                    "revision": w.revision,
                    "final": w.final,
                    "tail_open": w.tail_open,
                    "published": w.published,
                }
                for w in self._windows.values()
            ],
            "tracker": self._tracker.to_state(),
            "min_new_t": None if self._min_new_t == _NEVER else self._min_new_t,
        }

    @classmethod
    def from_state(cls, profile: KpiProfile, state: dict[str, Any]) -> MachineCalculator:
        """Rebuild a calculator from :meth:`to_state` output.

        Raises:
            ValueError: for an unknown state version or a state saved with another profile.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported calculator state version {state.get('version')!r}")
        if state.get("profile_hash") != profile_hash(profile):
            raise ValueError("calculator state was saved with another KPI profile")
        calc = cls(
            profile,
            allowed_lateness_s=state["allowed_lateness_s"],
            keep_final_s=state["keep_final_s"],
        )
        calc._log = [sample_from_json(s) for s in state["log"]]
        for w in state["windows"]:
            calc._windows[w["name"]] = _Window(
                Span(w["name"], w["start_ms"], w["end_ms"]),
                revision=w["revision"],
                final=w["final"],
                tail_open=w["tail_open"],
                published=w["published"],
            )
        calc._tracker.restore(state["tracker"])
        calc._min_new_t = _NEVER if state["min_new_t"] is None else state["min_new_t"]
        if calc._log:
            calc._prev = calc._log[-1]
            calc._newest = max(s.t_ms for s in calc._log)
        return calc
