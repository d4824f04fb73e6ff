"""Planned time and report windows: where the calendar meets UTC instants.

:class:`Planner` answers "how much of ``[a, b)`` is scheduled / planned" and
"is the instant just before ``t`` planned" for a profile (spec §3.4):
planned = (planned windows + shifts expanded per local date) minus exclusions.
Shifts are expanded per local date and converted with PEP 495 ``fold=0``, so a
22:00-06:00 Europe/Paris night lasts 7 h on 2024-03-31 and 9 h on 2024-10-27.
Results are cached per UTC day. The report-window generators (hour, local day,
shift, local month) are pure functions of the profile and an instant.
Nothing here reads the clock or does I/O.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import functools
from typing import NamedTuple
from zoneinfo import ZoneInfo

from edge_agent.kpi.profile import KpiProfile
from edge_agent.kpi.timeutil import MS_PER_S, datetime_to_ms, ms_to_datetime

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

Spans = list[tuple[int, int]]


class ReportWindow(NamedTuple):
    """A named half-open report window ``[start, end)`` in UTC epoch seconds."""

    name: str
    start: float
    end: float


class WindowKind(str, enum.Enum):
    """The report-window families the runtime can open."""

    HOUR = "hour"
    DAY = "day"
    SHIFT = "shift"
    MONTH = "month"


def _merge(spans: Spans) -> Spans:
    out: Spans = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _subtract(spans: Spans, cuts: Spans) -> Spans:
    out: Spans = []
    for s, e in spans:
        cur = s
        for cs, ce in cuts:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
            if cur >= e:
                break
        if cur < e:
            out.append((cur, e))
    return out


def overlap_length(spans: Spans, a: int, b: int) -> int:
    """Total length of the sorted disjoint ``spans`` inside ``[a, b)``."""
    total = 0
    for s, e in spans:
        if e <= a:
            continue
        if s >= b:
            break
        total += min(e, b) - max(s, a)
    return total


def local_ms(zone: ZoneInfo, day: dt.date, minute: int) -> int:
    """The UTC instant of local wall time ``day`` + ``minute`` in ``zone`` (fold=0)."""
    wall = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60)
    return datetime_to_ms(wall.replace(tzinfo=zone, fold=0))


def shift_span(profile: KpiProfile, shift_index: int, day: dt.date) -> tuple[int, int]:
    """UTC span of a shift starting on local date ``day`` (end <= start: next day)."""
    shift = profile.shifts[shift_index]
    end_day = day + dt.timedelta(days=1) if shift.end_min <= shift.start_min else day
    return (
        local_ms(profile.zone, day, shift.start_min),
        local_ms(profile.zone, end_day, shift.end_min),
    )


def local_date(profile: KpiProfile, t_ms: int) -> dt.date:
    """The local calendar date of an instant in the profile's zone."""
    return ms_to_datetime(t_ms).astimezone(profile.zone).date()


ALWAYS_MS = 2**62  # "every instant" for a 24/7 profile


class Planner:
    """Scheduled and planned time of one profile, cached per UTC day."""

    def __init__(self, profile: KpiProfile) -> None:
        self.profile = profile
        self._cache: dict[int, tuple[Spans, Spans]] = {}
        self._windows = _merge([(w.start_ms, w.end_ms) for w in profile.planned_windows])
        if profile.always_planned:  # spec §3.4: neither shifts nor planned windows
            self._windows = [(-ALWAYS_MS, ALWAYS_MS)]
        self._exclusions = _merge([(w.start_ms, w.end_ms) for w in profile.exclusions])

    def _day(self, k: int) -> tuple[Spans, Spans]:
        hit = self._cache.get(k)
        if hit is not None:
            return hit
        lo, hi = k * DAY_MS, (k + 1) * DAY_MS
        spans: Spans = [(max(s, lo), min(e, hi)) for s, e in self._windows if s < hi and e > lo]
        if self.profile.shifts:
            first = local_date(self.profile, lo) - dt.timedelta(days=2)
            for offset in range(5):
                day = first + dt.timedelta(days=offset)
                for i, shift in enumerate(self.profile.shifts):
                    if day.weekday() not in shift.days:
                        continue
                    s, e = shift_span(self.profile, i, day)
                    if s < hi and e > lo:
                        spans.append((max(s, lo), min(e, hi)))
        scheduled = _merge(spans)
        cuts = [(max(s, lo), min(e, hi)) for s, e in self._exclusions if s < hi and e > lo]
        planned = _subtract(scheduled, cuts)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[k] = (scheduled, planned)
        return scheduled, planned

    def spans(self, a: int, b: int, *, planned: bool = True) -> Spans:
        """Sorted disjoint planned (or scheduled) spans clipped to ``[a, b)``."""
        out: Spans = []
        if b <= a:
            return out
        for k in range(a // DAY_MS, (b - 1) // DAY_MS + 1):
            day = self._day(k)[1 if planned else 0]
            for s, e in day:
                if e <= a or s >= b:
                    continue
                s, e = max(s, a), min(e, b)
                if out and out[-1][1] == s:
                    out[-1] = (out[-1][0], e)
                else:
                    out.append((s, e))
        return out

    def planned_length(self, a: int, b: int) -> int:
        """Planned milliseconds inside ``[a, b)``."""
        if b <= a:
            return 0
        if a // DAY_MS == (b - 1) // DAY_MS:
            return overlap_length(self._day(a // DAY_MS)[1], a, b)
        return sum(e - s for s, e in self.spans(a, b))

    def scheduled_length(self, a: int, b: int) -> int:
        """Scheduled (planned or excluded) milliseconds inside ``[a, b)``."""
        return sum(e - s for s, e in self.spans(a, b, planned=False))

    def planned_before(self, t: int) -> tuple[bool, int]:
        """Whether the instant just before ``t`` is planned, and until when that holds.

        Returns ``(flag, hi)``: for every ``u`` with ``t <= u <= hi`` the answer
        for ``u`` is the same ``flag`` (so callers can cache it).
        """
        k = (t - 1) // DAY_MS
        day_planned = self._day(k)[1]
        starts = [s for s, _ in day_planned]
        i = bisect.bisect_left(starts, t) - 1  # last span with s < t
        if i >= 0 and day_planned[i][1] >= t:
            return True, day_planned[i][1]
        if i + 1 < len(day_planned):
            return False, day_planned[i + 1][0]
        return False, (k + 1) * DAY_MS


# -- report-window generators --------------------------------------------------


def _w(name: str, start_ms: int, end_ms: int) -> ReportWindow:
    return ReportWindow(name, start_ms / MS_PER_S, end_ms / MS_PER_S)


def hour_window(t_ms: int) -> ReportWindow:
    """The UTC clock hour holding ``t_ms``, named ``hour:YYYY-MM-DDTHH`` (UTC)."""
    start = t_ms - t_ms % HOUR_MS
    return _w("hour:" + ms_to_datetime(start).strftime("%Y-%m-%dT%H"), start, start + HOUR_MS)


@functools.lru_cache(maxsize=64)
def _day_window_cached(profile: KpiProfile, day: dt.date) -> ReportWindow:
    return day_window(profile, day)


def day_window(profile: KpiProfile, day: dt.date) -> ReportWindow:
    """The local calendar day (23 h / 25 h on DST change days), named ``day:YYYY-MM-DD``."""
    start = local_ms(profile.zone, day, 0)
    end = local_ms(profile.zone, day + dt.timedelta(days=1), 0)
    return _w(f"day:{day.isoformat()}", start, end)


def shift_window(profile: KpiProfile, shift_index: int, day: dt.date) -> ReportWindow:
    """One shift occurrence starting on local date ``day``, named ``shift:YYYY-MM-DD:NAME``."""
    start, end = shift_span(profile, shift_index, day)
    return _w(f"shift:{day.isoformat()}:{profile.shifts[shift_index].name}", start, end)


@functools.lru_cache(maxsize=16)
def _month_window_cached(profile: KpiProfile, year: int, month: int) -> ReportWindow:
    return month_window(profile, year, month)


def month_window(profile: KpiProfile, year: int, month: int) -> ReportWindow:
    """The local calendar month (the usual contract period), named ``month:YYYY-MM``."""
    first = dt.date(year, month, 1)
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return _w(
        f"month:{year:04d}-{month:02d}",
        local_ms(profile.zone, first, 0),
        local_ms(profile.zone, nxt, 0),
    )


def period_window(profile: KpiProfile, name: str, first: dt.date, last: dt.date) -> ReportWindow:
    """A contract period of explicit local dates ``first``..``last`` inclusive (local midnights)."""
    if last < first:
        raise ValueError("period: last date is before first date")
    return _w(
        name,
        local_ms(profile.zone, first, 0),
        local_ms(profile.zone, last + dt.timedelta(days=1), 0),
    )


def shift_windows(profile: KpiProfile, start_day: dt.date, end_day: dt.date) -> list[ReportWindow]:
    """Every shift occurrence starting on local dates ``start_day``..``end_day`` inclusive."""
    out: list[ReportWindow] = []
    day = start_day
    while day <= end_day:
        for i, shift in enumerate(profile.shifts):
            if day.weekday() in shift.days:
                out.append(shift_window(profile, i, day))
        day += dt.timedelta(days=1)
    return out


def windows_containing(profile: KpiProfile, kind: WindowKind, t: float) -> list[ReportWindow]:
    """The report windows of one family that hold instant ``t`` (epoch seconds).

    Hours are UTC clock hours; days, shifts and months are local to the
    profile's zone. Overlapping shifts may both hold ``t``.
    """
    t_ms = round(t * MS_PER_S)
    if kind is WindowKind.HOUR:
        return [hour_window(t_ms)]
    day = local_date(profile, t_ms)
    if kind is WindowKind.DAY:
        return [_day_window_cached(profile, day)]
    if kind is WindowKind.MONTH:
        return [_month_window_cached(profile, day.year, day.month)]
    return [
        w
        for w in _shift_windows_around(profile, day)
        if w.start * MS_PER_S <= t_ms < w.end * MS_PER_S
    ]


@functools.lru_cache(maxsize=64)
def _shift_windows_around(profile: KpiProfile, day: dt.date) -> tuple[ReportWindow, ...]:
    """Shift occurrences starting on ``day`` or the day before (cached: hot in the runtime)."""
    return tuple(shift_windows(profile, day - dt.timedelta(days=1), day))
