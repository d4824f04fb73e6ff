"""Contract periods and service hours: local months and quarters, rolling 30 days, DST, R."""

from __future__ import annotations

import pytest

from edge_agent.contracts import (
    CalendarKind,
    Kpi,
    PeriodKind,
    ServiceCalendar,
    next_period,
    period_at,
    remaining_service_s,
    service_profile,
)
from edge_agent.contracts.periods import Period
from edge_agent.kpi import KpiProfile
from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.profile import Shift, UtcInterval
from edge_agent.kpi.timeutil import parse_instant

from .support import H, contract, term

SLA = term(Kpi.SLA_AVAILABILITY, 0.98)
MACHINE = KpiProfile(
    ideal_cycle_time_s=2.0,
    timezone="Europe/Paris",
    shifts=(Shift(name="A", start_min=6 * 60, end_min=14 * 60),),
    exclusions=(
        UtcInterval(
            start_ms=parse_instant("2026-03-10T08:00:00Z"),
            end_ms=parse_instant("2026-03-10T10:00:00Z"),
        ),
    ),
)


def _period(kind: PeriodKind, t: str, zone: str = "Europe/Paris") -> Period:
    period = period_at(contract(SLA, timezone=zone, period=kind), parse_instant(t))
    assert period is not None
    return period


def _hours(p: Period) -> float:
    return (p.end_ms - p.start_ms) / 3_600_000


def test_paris_march_is_743_hours_and_october_745() -> None:
    """Local months in Europe/Paris: March loses an hour to summer time, October gains one."""
    march = _period(PeriodKind.MONTH, "2026-03-15T12:00:00Z")
    assert march == Period(
        "month:2026-03",
        parse_instant("2026-02-28T23:00:00Z"),
        parse_instant("2026-03-31T22:00:00Z"),
    )
    assert _hours(march) == 743
    october = _period(PeriodKind.MONTH, "2026-10-31T22:59:59Z")  # 23:59:59 local
    assert october.name == "month:2026-10"
    assert _hours(october) == 745


def test_month_is_local_not_utc() -> None:
    """23:30 UTC on 31 March is already April in Paris."""
    assert _period(PeriodKind.MONTH, "2026-03-31T22:30:00Z").name == "month:2026-04"
    assert _period(PeriodKind.MONTH, "2026-03-31T22:30:00Z", zone="UTC").name == "month:2026-03"


def test_quarter() -> None:
    """Q1 2026 in Paris: 1 January to 1 April local, 90 days less the spring-forward hour."""
    q1 = _period(PeriodKind.QUARTER, "2026-02-10T00:00:00Z")
    assert q1.name == "quarter:2026-Q1"
    assert q1.start_ms == parse_instant("2025-12-31T23:00:00Z")
    assert _hours(q1) == 90 * 24 - 1
    assert _period(PeriodKind.QUARTER, "2026-12-31T12:00:00Z").name == "quarter:2026-Q4"


def test_rolling_30_days_ends_with_today() -> None:
    """The rolling period at t is the 30 local days ending with t's local day; it closes tonight."""
    p = _period(PeriodKind.ROLLING_30D, "2026-03-31T10:00:00Z")
    assert p.name == "rolling_30d:2026-03-31"
    assert p.start_ms == parse_instant("2026-03-01T23:00:00Z")  # 2 March 00:00 local
    assert p.end_ms == parse_instant("2026-03-31T22:00:00Z")  # 1 April 00:00 local
    assert _hours(p) == 30 * 24 - 1
    nxt = next_period(contract(SLA, timezone="Europe/Paris", period=PeriodKind.ROLLING_30D), p)
    assert nxt is not None
    assert nxt.name == "rolling_30d:2026-04-01"
    assert nxt.end_ms - p.end_ms == 24 * 3_600_000


def test_explicit_dates_hold_one_period() -> None:
    """A dates period exists only between its bounds; there is no period after it."""
    start, end = parse_instant("2026-01-01T00:00:00Z"), parse_instant("2026-02-01T00:00:00Z")
    c = contract(SLA, period=PeriodKind.DATES, start_ms=start, end_ms=end)
    p = period_at(c, start)
    assert p == Period(
        "dates:2026-01-01T00:00:00Z/2026-02-01T00:00:00Z",
        start,
        end,
    )
    assert period_at(c, end) is None
    assert period_at(c, start - 1) is None
    assert next_period(c, p) is None


def test_next_month() -> None:
    """The period after March is April, starting where March ends."""
    c = contract(SLA, timezone="Europe/Paris")
    march = _period(PeriodKind.MONTH, "2026-03-15T12:00:00Z")
    april = next_period(c, march)
    assert april is not None
    assert (april.name, april.start_ms) == ("month:2026-04", march.end_ms)


# -- service hours and R ------------------------------------------------------------------------


def _remaining(calendar: ServiceCalendar, t: str, zone: str = "Europe/Paris") -> float:
    c = contract(SLA, timezone=zone, calendar=calendar)
    t_ms = parse_instant(t)
    period = period_at(c, t_ms)
    assert period is not None
    return remaining_service_s(Planner(service_profile(c, MACHINE)), period, t_ms)


def test_24_7_service_time_of_a_dst_month() -> None:
    """24/7 in Paris: R is 743 h at the start of March, 745 h at the start of October."""
    always = ServiceCalendar(kind=CalendarKind.ALWAYS)
    # The machine's own exclusion (10 March, 2 h) is planned maintenance: it still applies.
    assert _remaining(always, "2026-02-28T23:00:00Z") == (743 - 2) * H
    assert _remaining(always, "2026-09-30T22:00:00Z") == 745 * H
    # Mid-March, 15 March 00:00 local: 17 local days left, one of them 23 h.
    assert _remaining(always, "2026-03-14T23:00:00Z") == (17 * 24 - 1) * H


def test_night_shift_service_time_of_march() -> None:
    """A 22:00-06:00 service calendar: 31 nights x 8 h in March, minus the 7 h night's hour."""
    nights = ServiceCalendar(
        kind=CalendarKind.SHIFTS, shifts=(Shift(name="N", start_min=22 * 60, end_min=6 * 60),)
    )
    # Feb 28 night gives 6 h to March, nights of 1..30 March 8 h each except 28/29 March (7 h),
    # and the night of 31 March gives 2 h: 6 + 30 x 8 - 1 + 2 = 247 h.
    assert _remaining(nights, "2026-02-28T23:00:00Z") == 247 * H
    # From Saturday 28 March noon: the 7 h night, two 8 h nights, and 31 March 22:00 CEST
    # (20:00 UTC) to the end of the month at 22:00 UTC: 7 + 8 + 8 + 2 = 25 h.
    assert _remaining(nights, "2026-03-28T12:00:00Z") == 25 * H


def test_machine_calendar_is_the_profile_unchanged() -> None:
    """The "machine" calendar without contract exclusions is the machine's profile itself."""
    c = contract(SLA, timezone="Europe/Paris", calendar=ServiceCalendar(kind=CalendarKind.MACHINE))
    assert service_profile(c, MACHINE) is MACHINE
    # 06:00-14:00 local every day in March: 31 x 8 h, less the 2 h exclusion on 10 March.
    assert (
        _remaining(ServiceCalendar(kind=CalendarKind.MACHINE), "2026-02-28T23:00:00Z")
        == (31 * 8 - 2) * H
    )


def test_contract_exclusions_add_to_the_machine_exclusions() -> None:
    """Announced maintenance in the contract is removed besides the machine's own exclusions."""
    extra = UtcInterval(
        start_ms=parse_instant("2026-03-20T06:00:00Z"), end_ms=parse_instant("2026-03-20T10:00:00Z")
    )
    cal = ServiceCalendar(kind=CalendarKind.MACHINE, exclusions=(extra,))
    # The shift on 20 March is 05:00-13:00 UTC: the 4 h of the exclusion fall inside it.
    assert _remaining(cal, "2026-02-28T23:00:00Z") == (31 * 8 - 2 - 4) * H
    profile = service_profile(contract(SLA, calendar=cal), MACHINE)
    assert profile.exclusions == (*MACHINE.exclusions, extra)
    assert profile.customer_fault_codes == MACHINE.customer_fault_codes


@pytest.mark.parametrize("kind", [CalendarKind.ALWAYS, CalendarKind.SHIFTS])
def test_service_profile_keeps_every_kpi_parameter(kind: CalendarKind) -> None:
    """Only the calendar changes: threshold, hold bound, customer codes stay the machine's."""
    m = KpiProfile(
        ideal_cycle_time_s=3.0,
        micro_stop_threshold_s=300,
        max_gap_s=15,
        customer_fault_codes=((900, 999),),
    )
    cal = ServiceCalendar(kind=kind, shifts=(Shift(name="X", start_min=0, end_min=60),))
    p = service_profile(contract(SLA, timezone="Europe/Paris", calendar=cal), m)
    assert (p.ideal_cycle_time_s, p.micro_stop_threshold_s, p.max_gap_s) == (3.0, 300, 15)
    assert p.customer_fault_codes == ((900, 999),)
    assert p.timezone == "Europe/Paris"


def test_no_remaining_time_after_the_end() -> None:
    """R is 0 at and after the period's end."""
    p = Period("x", 0, 3_600_000)
    planner = Planner(service_profile(contract(SLA), MACHINE))
    assert remaining_service_s(planner, p, 3_600_000) == 0.0
    assert remaining_service_s(planner, p, 7_200_000) == 0.0
