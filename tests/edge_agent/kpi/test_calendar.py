"""Planned time and report windows: shifts per local date with fold=0, DST, generators."""

from __future__ import annotations

import datetime as dt

from edge_agent.kpi import KpiProfile
from edge_agent.kpi.calendar import (
    Planner,
    WindowKind,
    day_window,
    month_window,
    period_window,
    shift_windows,
    windows_containing,
)
from edge_agent.kpi.profile import Shift, UtcInterval
from edge_agent.kpi.timeutil import format_instant, parse_instant

PARIS = KpiProfile(
    ideal_cycle_time_s=1,
    timezone="Europe/Paris",
    shifts=(
        Shift(name="A", start_min=6 * 60, end_min=14 * 60),
        Shift(name="N", start_min=22 * 60, end_min=6 * 60),
    ),
)


def _hours(w: tuple[str, float, float]) -> float:
    return (w[2] - w[1]) / 3600


def test_local_days_last_23_and_25_hours_on_dst_days() -> None:
    """Europe/Paris local days are 23 h on 2024-03-31, 25 h on 2024-10-27, else 24 h."""
    assert _hours(day_window(PARIS, dt.date(2024, 3, 31))) == 23
    assert _hours(day_window(PARIS, dt.date(2024, 10, 27))) == 25
    assert _hours(day_window(PARIS, dt.date(2024, 5, 13))) == 24
    assert day_window(PARIS, dt.date(2024, 5, 13)).name == "day:2024-05-13"


def test_night_shifts_last_7_and_9_hours_on_dst_nights() -> None:
    """The 22:00-06:00 night starting 2024-03-30 lasts 7 h, the one starting 2024-10-26 9 h."""
    spring = {w.name: w for w in shift_windows(PARIS, dt.date(2024, 3, 30), dt.date(2024, 3, 30))}
    fall = {w.name: w for w in shift_windows(PARIS, dt.date(2024, 10, 26), dt.date(2024, 10, 26))}
    assert _hours(spring["shift:2024-03-30:N"]) == 7
    assert _hours(fall["shift:2024-10-26:N"]) == 9
    assert (
        format_instant(round(spring["shift:2024-03-30:N"].start * 1000)) == "2024-03-30T21:00:00Z"
    )
    assert _hours(spring["shift:2024-03-30:A"]) == 8


def test_shift_with_end_equal_to_start_lasts_a_whole_local_day() -> None:
    """00:00-00:00 is a round-the-clock shift: 24 h, or 23 h / 25 h on DST days (end <= start)."""
    always = KpiProfile(
        ideal_cycle_time_s=1,
        timezone="Europe/Paris",
        shifts=(Shift(name="all", start_min=0, end_min=0),),
    )
    for day, hours in (
        (dt.date(2024, 5, 13), 24),
        (dt.date(2024, 3, 31), 23),
        (dt.date(2024, 10, 27), 25),
    ):
        (w,) = shift_windows(always, day, day)
        assert _hours(w) == hours
        planner = Planner(always)
        assert (
            planner.planned_length(round(w.start * 1000), round(w.end * 1000))
            == hours * 3600 * 1000
        )


def test_planner_sums_shift_time_across_dst() -> None:
    """Planned time of the 2024-03-31 local day is 8 h (A) + 5 h + 2 h of nights - on a 23 h day."""
    planner = Planner(PARIS)
    day = day_window(PARIS, dt.date(2024, 3, 31))
    planned = planner.planned_length(round(day.start * 1000), round(day.end * 1000))
    # 00:00-06:00 local is only 5 h of real time on the spring-forward night.
    assert planned == (5 + 8 + 2) * 3600 * 1000


def test_exclusions_and_planned_before() -> None:
    """Exclusions cut planned time; planned_before(t) uses the instant just before t."""
    t0 = parse_instant("2024-05-13T08:00:00Z")
    profile = KpiProfile(
        ideal_cycle_time_s=1,
        planned_windows=(UtcInterval(start_ms=t0, end_ms=t0 + 4 * 3600_000),),
        exclusions=(UtcInterval(start_ms=t0 + 3600_000, end_ms=t0 + 5400_000),),
    )
    planner = Planner(profile)
    assert planner.planned_length(t0 - 3600_000, t0 + 5 * 3600_000) == 3600_000 * 4 - 1800_000
    assert planner.scheduled_length(t0 - 3600_000, t0 + 5 * 3600_000) == 4 * 3600_000
    assert planner.planned_before(t0) == (False, t0)
    assert planner.planned_before(t0 + 1)[0] is True
    assert planner.planned_before(t0 + 3600_000) == (True, t0 + 3600_000)
    assert planner.planned_before(t0 + 3600_001)[0] is False


def test_windows_containing_names_and_bounds() -> None:
    """Hour (UTC), local day, shift and local month windows hold the instant and are named."""
    t = parse_instant("2024-10-26T23:30:00Z") / 1000  # 01:30 CEST on 27 Oct
    (hour,) = windows_containing(PARIS, WindowKind.HOUR, t)
    assert hour.name == "hour:2024-10-26T23"
    (day,) = windows_containing(PARIS, WindowKind.DAY, t)
    assert day.name == "day:2024-10-27"
    shifts = windows_containing(PARIS, WindowKind.SHIFT, t)
    assert [w.name for w in shifts] == ["shift:2024-10-26:N"]
    (month,) = windows_containing(PARIS, WindowKind.MONTH, t)
    assert month.name == "month:2024-10"
    assert month == month_window(PARIS, 2024, 10)
    assert (month.end - month.start) / 3600 == 31 * 24 + 1
    assert (
        windows_containing(PARIS, WindowKind.SHIFT, parse_instant("2024-05-13T13:00:00Z") / 1000)
        == []
    )


def test_shift_days_restrict_expansion() -> None:
    """A shift with ``days`` expands only on those local start dates."""
    profile = KpiProfile(
        ideal_cycle_time_s=1,
        shifts=(Shift(name="A", start_min=360, end_min=840, days=frozenset({0})),),
    )
    names = [w.name for w in shift_windows(profile, dt.date(2024, 5, 12), dt.date(2024, 5, 14))]
    assert names == ["shift:2024-05-13:A"]
    planner = Planner(profile)
    assert (
        planner.planned_length(
            parse_instant("2024-05-12T00:00:00Z"), parse_instant("2024-05-15T00:00:00Z")
        )
        == 8 * 3600_000
    )


def test_period_window_spans_local_dates() -> None:
    """An explicit contract period runs from local midnight of the first date to after the last."""
    w = period_window(PARIS, "contract:Q1", dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    assert format_instant(round(w.start * 1000)) == "2024-02-29T23:00:00Z"
    assert format_instant(round(w.end * 1000)) == "2024-03-31T22:00:00Z"
    assert (w.end - w.start) / 3600 == 31 * 24 - 1
