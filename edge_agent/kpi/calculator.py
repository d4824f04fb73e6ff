"""The per-machine streaming calculator the runtime drives (spec §3.2 streaming).

:class:`MachineCalculator` accepts samples in arrival order and produces
"so far", final and revised :class:`~edge_agent.kpi.record.KpiRecord` for the
report windows the runtime opens, plus live stop events and the state-interval
log. One resumable :class:`~edge_agent.kpi.engine.Sweep` accumulates every
tracked window; in-order samples are fed to it directly (O(1) per sample).
Periodic checkpoints of the sweep and the samples since the oldest one are
kept for ``revision_horizon_s``: a late, duplicate or pre-sync sample rewinds
to the last checkpoint before it and replays the retained samples, so the
result is the same as :func:`~edge_agent.kpi.replay.compute_records` on all
samples (order-independent, one-by-one equal to batch, save/restore equal to
an uninterrupted run). Memory and the persisted state are bounded by the
horizon, not by window length, so month-long windows are cheap.

Guarantees: no sample is silently dropped. A sample older than the horizon
cannot be placed exactly any more: it is left out and the windows holding its
time get the flag ``late_data_ignored`` (and a revision if they were final).
Pure: no I/O, no clock reads (time comes with samples and the watermark).

Size: over 400 lines because the pure calculator core; its sections map one to one to
the KPI specification's.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.engine import Span, Sweep
from edge_agent.kpi.events import LiveState, LiveTracker, StateInterval, StopEvent
from edge_agent.kpi.prepare import FLAG_CLOCK_STEP, Marker, Point, corrected_times, prepare
from edge_agent.kpi.profile import KpiProfile, profile_hash
from edge_agent.kpi.record import KpiRecord
from edge_agent.kpi.sample import Sample
from edge_agent.kpi.samplelog import PointLog, SampleLog, decode_log, encode_log, pack_log
from edge_agent.kpi.timeutil import MS_PER_S

# 3: the sample log as compact rows; 4: as one compressed block (edge_agent.kpi.samplelog)
STATE_VERSION = 4
_READABLE_VERSIONS = (2, 3, STATE_VERSION)
FLAG_LATE_IGNORED = "late_data_ignored"
_NEVER = 2**62
_IDENTITY = ("revision", "final")


@dataclass(slots=True)
class _Window:
    span: Span
    revision: int = 0
    final: bool = False
    published: dict[str, Any] = field(default_factory=dict)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k not in _IDENTITY} == {
        k: v for k, v in b.items() if k not in _IDENTITY
    }


def _point(s: Sample) -> Point:
    if s.is_bad:
        return (s.t_ms, True, 0, 0, 0, 0)
    return (s.t_ms, False, s.run, s.fault, s.good, s.total)


class MachineCalculator:
    """Streaming KPI calculator of one machine.

    Args:
        profile: the machine's calculation profile.
        allowed_lateness_s: how long after its end a window stays open for late
            samples before its final record is produced (at least ``max_gap_s``
            plus the store-and-forward depth is recommended).
        keep_final_s: how long after ``end + allowed_lateness`` a final window is
            kept, so that late samples still produce revisions.
        revision_horizon_s: how far behind the newest sample a late sample can
            still be placed exactly (default ``allowed_lateness_s + max_gap_s``,
            at least one hour). Memory and state size grow with it.
    """

    def __init__(
        self,
        profile: KpiProfile,
        *,
        allowed_lateness_s: float,
        keep_final_s: float = 7 * 86400.0,
        revision_horizon_s: float | None = None,
    ) -> None:
        if allowed_lateness_s < 0 or keep_final_s < 0:
            raise ValueError("allowed_lateness_s and keep_final_s must be >= 0")
        self.profile = profile
        self.allowed_lateness_s = allowed_lateness_s
        self.keep_final_s = keep_final_s
        if revision_horizon_s is None:
            revision_horizon_s = max(3600.0, allowed_lateness_s + profile.max_gap_s)
        self.revision_horizon_s = revision_horizon_s
        self._horizon = round(revision_horizon_s * MS_PER_S)
        self._cp_every = max(60_000, self._horizon // 32)
        self._planner = Planner(profile)
        self._tracker = LiveTracker(profile, self._planner)
        self._windows: dict[str, _Window] = {}
        # base: the sweep after every point with t <= base_t; log: samples after it.
        self._base = Sweep(profile, self._planner)
        self._base_t = -_NEVER
        # Retained samples and fed points, stored column-wise (edge_agent.kpi.samplelog).
        self._log = SampleLog()
        self._markers: list[Marker] = []
        self._sweep = self._base.clone()
        self._fed = PointLog()
        self._checkpoints: list[tuple[int, Sweep]] = []
        self._dirty = False
        self._changed: set[str] = set()
        self._newest = -_NEVER
        self._prev: Sample | None = None
        # Latest end of a final window (an upper bound: forgetting one leaves it as is).
        self._final_hi = -_NEVER

    # -- input ------------------------------------------------------------------
    def add(self, sample: Sample) -> list[StopEvent]:
        """Take one sample (arrival order); return stop-event updates for publishing."""
        prev, self._prev = self._prev, sample
        self._log.append(sample)
        in_order = sample.t_ms > self._newest
        self._newest = max(self._newest, sample.t_ms)
        clock_ok = sample.mono_s is None or (
            bool(sample.synced) and (prev is None or prev.mono_s is None or bool(prev.synced))
        )
        if self._dirty or not (in_order and clock_ok):
            self._dirty = True
        else:
            self._feed_fast(prev, sample)
        return self._tracker.add(sample)

    def _feed_fast(self, prev: Sample | None, s: Sample) -> None:
        """Feed an in-order sample straight into the sweep (the common case)."""
        if prev is not None and s.mono_s is not None and prev.mono_s is not None:
            d_mono = round((s.mono_s - prev.mono_s) * MS_PER_S)
            tolerance = round(self.profile.clock_step_tolerance_s * MS_PER_S)
            if d_mono >= 0 and abs(s.t_ms - prev.t_ms - d_mono) > tolerance:
                marker = Marker(prev.t_ms, s.t_ms, FLAG_CLOCK_STEP)
                self._markers.append(marker)
                self._sweep.flag(marker)
        point = _point(s)
        if self._sweep.started and self._sweep.prev_t <= self._final_hi:
            # In order but not after every final window: the hold since the previous
            # point and a count at t (start < t <= end) may change one (watermark closed
            # it before this sample arrived); let revisions() look.
            since = self._sweep.prev_t
            self._changed |= {
                n for n, w in self._windows.items() if w.final and w.span.end >= since
            }
        self._sweep.feed((point,))
        self._fed.append(point)
        last = self._checkpoints[-1][0] if self._checkpoints else self._base_t
        if point[0] - last >= self._cp_every:
            self._checkpoints.append((point[0], self._sweep.clone()))

    @property
    def live(self) -> LiveState:
        """The machine's state as of the newest sample, from the live tracker."""
        return self._tracker.live

    def drain_intervals(self) -> list[StateInterval]:
        """Closed state intervals (RUNNING/STOPPED/UNKNOWN) since the last call."""
        return self._tracker.drain()

    # -- re-synchronisation after late / out-of-order / pre-sync samples --------------
    def _resync(self) -> None:
        """Rewind to the last checkpoint before the first change and replay the log."""
        if not self._dirty:
            return
        self._dirty = False
        times = self._log_times()
        # Pre-sync samples whose boot has no synced sample yet cannot be placed: keep
        # them in the log (not late, not fed) until the clock syncs.
        waiting = [
            s.mono_s is not None and not s.synced and t == s.t_ms and t <= self._base_t
            for s, t in zip(self._log, times, strict=True)
        ]
        usable = [s for s, w in zip(self._log, waiting, strict=True) if not w]
        points, markers = prepare(self.profile, usable)
        # The whole log as objects is the largest temporary of a rewind (it grows with
        # the retained horizon): gone before the comparison below builds its own.
        del usable
        late = [p for p in points if p[0] <= self._base_t]
        if late:
            markers = [*markers, *(Marker(p[0], p[0], FLAG_LATE_IGNORED) for p in late)]
            points = [p for p in points if p[0] > self._base_t]
            keep = {p[0] for p in points}
            self._log = SampleLog(
                s for s, t, w in zip(self._log, times, waiting, strict=True) if w or t in keep
            )
        # The first point that differs from what was fed (streamed: no copy of the log).
        k, fed_t = 0, _NEVER
        for k, old in enumerate(itertools.chain(self._fed, (None,))):
            if old is None or k >= len(points) or points[k] != old:
                fed_t = _NEVER if old is None else old[0]
                break
        if k < len(points) or fed_t != _NEVER:
            self._replay(min(points[k][0] if k < len(points) else _NEVER, fed_t), points)
        for marker in markers:
            if marker not in self._markers:
                self._markers.append(marker)
            self._sweep.flag(marker)
        self._changed |= self._sweep.changed

    def _log_times(self) -> list[int]:
        if self._log.all_synced():
            return self._log.times()  # clock correction would move none of them
        # Built once: corrected_times reads each sample several times.
        return corrected_times(self.profile, list(self._log))[0]

    def _replay(self, t_from: int, points: Sequence[Point]) -> None:
        """Rebuild the sweep from the last state strictly before ``t_from``."""
        self._checkpoints = [cp for cp in self._checkpoints if cp[0] < t_from]
        start_t, start = self._checkpoints[-1] if self._checkpoints else (self._base_t, self._base)
        self._changed |= self._sweep.changed
        sweep = start.clone()
        last = start_t
        todo = [p for p in points if p[0] > start_t]
        chunk: list[Point] = []
        for p in todo:
            chunk.append(p)
            if p[0] - last >= self._cp_every:
                sweep.feed(chunk)
                chunk = []
                last = p[0]
                self._checkpoints.append((last, sweep.clone()))
        sweep.feed(chunk)
        for marker in self._markers:
            sweep.flag(marker)
        self._sweep = sweep
        self._fed = PointLog(points)
        # Every final window after t_from may have changed: let revisions() look. A
        # window ending AT t_from too: a count observed at t belongs to start < t <= end.
        self._changed |= {n for n, w in self._windows.items() if w.span.end >= t_from}

    # -- windows ----------------------------------------------------------------
    def open_window(self, name: str, start: float, end: float) -> None:
        """Start tracking a report window ``[start, end)`` (epoch seconds); idempotent.

        Opening a window before the first sample inside it is exact. A window that
        starts in the past is rebuilt from the last checkpoint before its start; if
        that lies beyond the revision horizon it gets the flag ``partial_history``.
        """
        if name in self._windows:
            return
        span = Span(name, round(start * MS_PER_S), round(end * MS_PER_S))
        if span.end <= span.start:
            raise ValueError(f"window {name!r}: end must be after start")
        self._resync()
        self._windows[name] = _Window(span)
        states = [self._base, *(cp for _, cp in self._checkpoints)]
        if not self._sweep.started or self._sweep.prev_t <= span.start:
            for sweep in [*states, self._sweep]:
                sweep.attach(span)
            for marker in self._markers:
                self._sweep.flag(marker)
            return
        # Retroactive: attach where nothing overlapping it was swept yet, then replay.
        fits = [i for i, sw in enumerate(states) if not sw.started or sw.prev_t <= span.start]
        upto = fits[-1] if fits else 0
        for sweep in states[: upto + 1]:
            sweep.attach(span)
        if not fits:
            self._base.accs[name].flags.add("partial_history")
        t_from = (self._base_t if upto == 0 else self._checkpoints[upto - 1][0]) + 1
        points = self._fed
        self._replay(t_from, points)

    def window_names(self, *, final: bool | None = None) -> list[str]:
        """Names of the tracked windows: all, or only final (True) / still open (False) ones."""
        return [n for n, w in self._windows.items() if final is None or w.final == final]

    def forget(self, name: str) -> None:
        """Stop tracking a window (no more revisions)."""
        self._windows.pop(name, None)
        for sweep in [self._base, self._sweep, *(cp for _, cp in self._checkpoints)]:
            sweep.detach(name)

    def _snapshot(
        self, name: str, cut: int | None = None, *, so_far: bool = False, until: int | None = None
    ) -> KpiRecord:
        """The record of one window as if no more samples arrived (optionally cut).

        ``so_far``: the window is still open (see :meth:`Sweep.finish`: pending stops);
        ``until``: "now" in epoch ms, the last state of a so-far record holds no further.
        """
        state = self._sweep
        if cut is not None and cut < self._newest:
            # The window is cut before the newest sample: start from a state that has
            # accumulated nothing after the cut, clip the window, replay every point.
            older = [(t, cp) for t, cp in self._checkpoints if t <= cut and name in cp.accs]
            t0, state = older[-1] if older else (self._base_t, self._base)
            if name not in state.accs:
                state = self._sweep
            else:
                snap = state.clone(only=name, cut=cut)
                snap.feed([p for p in self._fed if p[0] > t0])
                snap.finish(so_far=so_far, until=until if so_far else None)
                return snap.records()[name]
        snap = state.clone(only=name, cut=cut)
        snap.finish(so_far=so_far, until=until if so_far else None)
        return snap.records()[name]

    def record(
        self, name: str, *, now: float | None = None, so_far: bool | None = None
    ) -> KpiRecord:
        """The current ("so far") record of a window, optionally cut at ``now`` (epoch s).

        ``so_far`` (default: the window is not final yet) reports an open stop still
        within the micro-stop threshold as ``pending_stop_s``; False classifies it by
        its duration so far, as a final record does.

        Raises:
            KeyError: when the window is not tracked.
        """
        win = self._windows[name]
        self._resync()
        cut = until = None
        if now is not None:
            until = round(now * MS_PER_S)
            cut = max(win.span.start + 1, min(win.span.end, until))
        pending = not win.final if so_far is None else so_far
        rec = self._snapshot(name, cut, so_far=pending, until=until)
        return rec.with_meta(revision=win.revision, final=win.final)

    def close_due(self, watermark: float) -> list[KpiRecord]:
        """Final records of windows whose ``end + allowed_lateness`` <= ``watermark``.

        Also drops final windows older than ``keep_final_s`` and folds samples older
        than the revision horizon into the base state.
        """
        self._resync()
        wm = round(watermark * MS_PER_S)
        late = round(self.allowed_lateness_s * MS_PER_S)
        out: list[KpiRecord] = []
        for name, win in self._windows.items():
            if not win.final and win.span.end + late <= wm:
                rec = self._snapshot(name).with_meta(final=True, revision=0)
                win.final, win.published = True, rec.as_dict()
                self._final_hi = max(self._final_hi, win.span.end)
                out.append(rec)
        keep = round(self.keep_final_s * MS_PER_S)
        for name in [
            n for n, w in self._windows.items() if w.final and w.span.end + late + keep < wm
        ]:
            self.forget(name)
        self._fold(self._newest - self._horizon)
        return out

    def revisions(self) -> list[KpiRecord]:
        """Revised records of final windows changed by samples that arrived after closing."""
        self._resync()
        self._changed |= self._sweep.changed
        self._sweep.changed = set()
        candidates = set(self._changed)
        self._changed = set()
        if self._sweep.event is not None:
            candidates |= set(self._sweep.event.pending)
        out: list[KpiRecord] = []
        for name, win in self._windows.items():
            if not win.final or name not in candidates:
                continue
            rec = self._snapshot(name).with_meta(final=True, revision=win.revision)
            if _same(rec.as_dict(), win.published):
                continue
            win.revision += 1
            rec = rec.with_meta(revision=win.revision)
            win.published = rec.as_dict()
            out.append(rec)
        return out

    def _fold(self, horizon_t: int) -> None:
        """Make the last checkpoint at or before ``horizon_t`` the new base; drop older data."""
        older = [i for i, (t, _) in enumerate(self._checkpoints) if t <= horizon_t]
        if not older or self._dirty:
            return
        i = older[-1]
        self._base_t, self._base = self._checkpoints[i]
        self._checkpoints = self._checkpoints[i + 1 :]
        self._fed = self._fed.after(self._base_t)
        if self._log.all_synced():  # times need no correction: cut by stored time
            self._log = self._log.after(self._base_t)
        else:
            self._log = self._log.select(t > self._base_t for t in self._log_times())
        lowest = min((w.span.start for w in self._windows.values()), default=self._base_t)
        self._markers = [m for m in self._markers if m.hi >= lowest]

    # -- persistence --------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (bounded by the horizon); see :meth:`from_state`."""
        return {
            "version": STATE_VERSION,
            "profile_hash": profile_hash(self.profile),
            "allowed_lateness_s": self.allowed_lateness_s,
            "keep_final_s": self.keep_final_s,
            "revision_horizon_s": self.revision_horizon_s,
            "base_t": self._base_t,
            "base": self._base.to_state(),
            "log": pack_log(self._log) or encode_log(self._log),
            "markers": [list(m) for m in self._markers],
            "windows": [
                {
                    "name": w.span.name,
                    "start_ms": w.span.start,
                    "end_ms": w.span.end,
                    "revision": w.revision,
                    "final": w.final,
                    "published": w.published,
                }
                for w in self._windows.values()
            ],
            "changed": sorted(self._changed | self._sweep.changed),
            "tracker": self._tracker.to_state(),
        }

    @classmethod
    def from_state(cls, profile: KpiProfile, state: dict[str, Any]) -> MachineCalculator:
        """Rebuild a calculator from :meth:`to_state` output; it continues exactly.

        Raises:
            ValueError: for an unknown state version or a state saved with another profile.
        """
        if state.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported calculator state version {state.get('version')!r}")
        if state.get("profile_hash") != profile_hash(profile):
            raise ValueError("calculator state was saved with another KPI profile")
        calc = cls(
            profile,
            allowed_lateness_s=state["allowed_lateness_s"],
            keep_final_s=state["keep_final_s"],
            revision_horizon_s=state["revision_horizon_s"],
        )
        calc._base_t = state["base_t"]
        calc._base = Sweep.from_state(profile, calc._planner, state["base"])
        calc._sweep = calc._base.clone()
        calc._log = decode_log(state["log"])
        calc._markers = [Marker(int(lo), int(hi), str(flag)) for lo, hi, flag in state["markers"]]
        for w in state["windows"]:
            calc._windows[w["name"]] = _Window(
                Span(w["name"], w["start_ms"], w["end_ms"]),
                revision=w["revision"],
                final=w["final"],
                published=w["published"],
            )
            if w["final"]:
                calc._final_hi = max(calc._final_hi, w["end_ms"])
        calc._tracker.restore(state["tracker"])
        calc._newest = max([calc._base_t, *(s.t_ms for s in calc._log)])
        if calc._log:
            calc._prev = calc._log[-1]
        calc._dirty = True
        calc._resync()
        calc._changed = set(state["changed"])
        calc._sweep.changed = set()
        return calc
