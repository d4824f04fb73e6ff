"""Turn samples in arrival order into one clean, time-ordered sequence (spec §3.2).

Steps: clock correction with ``mono_s``/``synced`` (pre-sync samples are
re-anchored on the first synced sample of their boot, later unsynced samples
follow the monotonic clock, NTP steps between consecutive synced samples are
kept and flagged ``clock_step``), a stable sort by corrected time (arrival
order breaks ties), dropping exact duplicates and keeping the first received
of conflicting duplicates (flag ``conflicting_duplicate``). The result does
not depend on arrival order except where the spec says arrival decides (ties,
conflicting duplicates, and boot boundaries, which are detected as a decrease
of ``mono_s`` in arrival order). Pure: no I/O, no clock reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

from edge_agent.kpi.profile import KpiProfile
from edge_agent.kpi.sample import QUALITY_BAD, Sample

FLAG_CLOCK_STEP = "clock_step"
FLAG_CONFLICTING_DUPLICATE = "conflicting_duplicate"


Point = tuple[int, bool, int, int, int, int]
"""A prepared sample ``(t_ms, bad, run, fault, good, total)``; a bad point has zero fields.

A plain tuple rather than a NamedTuple: building and unpacking it is the hot
path of a month-long replay.
"""


class Marker(NamedTuple):
    """A flag raised at an instant span ``[lo, hi]`` (ms) by preparation."""

    lo: int
    hi: int
    flag: str


def corrected_times(
    profile: KpiProfile, samples: Sequence[Sample]
) -> tuple[list[int], list[Marker]]:
    """Clock-corrected times (ms) of samples in arrival order, and clock-step markers."""
    times = [s.t_ms for s in samples]
    markers: list[Marker] = []
    boots: list[list[int]] = []
    last_mono: float | None = None
    for i, s in enumerate(samples):
        if s.mono_s is None:
            continue
        if last_mono is None or s.mono_s < last_mono:
            boots.append([])
        boots[-1].append(i)
        last_mono = s.mono_s
    tol_ms = round(profile.clock_step_tolerance_s * 1000)
    for boot in boots:
        boot.sort(key=lambda i: samples[i].mono_s or 0.0)
        anchor = next((j for j, i in enumerate(boot) if samples[i].synced), None)
        if anchor is None:
            continue
        k = boot[anchor]
        mono_k = samples[k].mono_s or 0.0
        for i in boot[:anchor]:
            times[i] = samples[k].t_ms - round((mono_k - (samples[i].mono_s or 0.0)) * 1000)
        for prev, i in zip(boot[anchor:], boot[anchor + 1 :], strict=False):
            d_mono = round(((samples[i].mono_s or 0.0) - (samples[prev].mono_s or 0.0)) * 1000)
            if not samples[i].synced:
                times[i] = times[prev] + d_mono
            elif (
                samples[prev].synced and abs(samples[i].t_ms - samples[prev].t_ms - d_mono) > tol_ms
            ):
                lo, hi = sorted((times[prev], times[i]))
                markers.append(Marker(lo, hi, FLAG_CLOCK_STEP))
    return times, markers


def prepare(profile: KpiProfile, samples: Sequence[Sample]) -> tuple[list[Point], list[Marker]]:
    """Clock-correct, sort and de-duplicate samples given in arrival order."""
    markers: list[Marker] = []
    if any(s.mono_s is not None for s in samples):
        times, markers = corrected_times(profile, samples)
        points: list[Point] = [
            (t, True, 0, 0, 0, 0)
            if s.quality is QUALITY_BAD
            else (t, False, s.run, s.fault, s.good, s.total)
            for t, s in zip(times, samples, strict=True)
        ]
    else:
        points = [
            (s.t_ms, True, 0, 0, 0, 0)
            if s.quality is QUALITY_BAD
            else (s.t_ms, False, s.run, s.fault, s.good, s.total)
            for s in samples
        ]
        times = [p[0] for p in points]
    # Fast path (live polling, ordered replays): strictly increasing times need no sort.
    # (Checked pairwise: no sorted copy or set of the whole horizon's times.)
    if all(a < b for a, b in pairwise(times)):
        return points, markers
    order = sorted(range(len(points)), key=times.__getitem__)
    out: list[Point] = []
    for i in order:
        p = points[i]
        if out and out[-1][0] == p[0]:
            if out[-1] != p:
                markers.append(Marker(p[0], p[0], FLAG_CONFLICTING_DUPLICATE))
            continue
        out.append(p)
    return out, markers
