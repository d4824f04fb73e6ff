"""Contract status from machine samples through the real KPI calculator (hand-worked periods).

Samples go through ``compute_records`` with the contract's service profile, the
period's components feed ``evaluate_contract``: the path the runtime takes. The
expected figures are worked by hand from the scripted timeline.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge_agent.contracts import (
    CalendarKind,
    Contract,
    ContractStatus,
    Kpi,
    MachineInput,
    PeriodKind,
    ServiceCalendar,
    State,
    evaluate_contract,
    period_at,
    remaining_service_s,
    service_profile,
)
from edge_agent.kpi import KpiProfile, Sample, compute_records, profile_hash
from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.profile import UtcInterval
from edge_agent.kpi.timeutil import parse_instant

from .support import DAY, contract, term

Segment = tuple[str, str, int, int, bool]  # start, end (ISO), run, fault, good quality


def _samples(segments: Sequence[Segment], step_s: int = 60) -> list[Sample]:
    """One sample every ``step_s`` inside each segment and one at its end (counters rising)."""
    out: list[Sample] = []
    count = 0
    for start, end, run, fault, good in segments:
        a, b = parse_instant(start), parse_instant(end)
        t = a
        while t < b:
            out.append(
                Sample.at_ms(t, run=run, fault=fault, good=count, total=count)
                if good
                else Sample.at_ms(t, quality="bad")
            )
            nxt = min(t + step_s * 1000, b)
            if run:
                count += (nxt - t) // 2000  # ideal 2 s cycle
            t = nxt
    last = segments[-1]
    out.append(
        Sample.at_ms(parse_instant(last[1]), run=last[2], fault=last[3], good=count, total=count)
    )
    return out


def _status(
    c: Contract,
    profile: KpiProfile,
    segments: Sequence[Segment],
    at: str,
    *,
    final: bool = False,
) -> ContractStatus:
    """Components of [period start, at) from the calculator on the service profile, then §3.13."""
    at_ms = parse_instant(at)
    period = period_at(c, at_ms - 1)
    assert period is not None
    service = service_profile(c, profile)
    samples = [s for s in _samples(segments) if s.t_ms <= at_ms]
    records = compute_records(service, samples, [("p", period.start_ms / 1000, at_ms / 1000)])
    remaining = remaining_service_s(Planner(service), period, at_ms)
    return evaluate_contract(
        c,
        period,
        [
            MachineInput(
                machine="m1",
                components=records["p"].components(),
                ideal_cycle_time_s=profile.ideal_cycle_time_s,
                remaining_s=remaining,
                profile_hash=records["p"].profile_hash,
            )
        ],
        at_ms=at_ms,
        final=final,
    )


DAY_PERIOD = {
    "period": PeriodKind.DATES,
    "start_ms": parse_instant("2026-06-01T00:00:00Z"),
    "end_ms": parse_instant("2026-06-02T00:00:00Z"),
}


def test_customer_attributed_fault_does_not_count() -> None:
    """2 h stopped on customer code 42 and 1 h on provider code 17 in a 24/7 day.

    K = 86,400, C = 7,200, Bp = 3,600: SLA = 75,600 / 79,200 = 0.954545 meets 95 %;
    OEE availability counts both stops: 75,600 / 86,400 = 0.875 misses it.
    """
    profile = KpiProfile(ideal_cycle_time_s=2.0, customer_fault_codes=((42, 42),))
    segments: list[Segment] = [
        ("2026-06-01T00:00:00Z", "2026-06-01T02:00:00Z", 1, 0, True),
        ("2026-06-01T02:00:00Z", "2026-06-01T04:00:00Z", 0, 42, True),
        ("2026-06-01T04:00:00Z", "2026-06-01T10:00:00Z", 1, 0, True),
        ("2026-06-01T10:00:00Z", "2026-06-01T11:00:00Z", 0, 17, True),
        ("2026-06-01T11:00:00Z", "2026-06-02T00:00:00Z", 1, 0, True),
    ]
    c = contract(term(Kpi.SLA_AVAILABILITY, 0.95), term(Kpi.AVAILABILITY, 0.95), **DAY_PERIOD)
    st = _status(c, profile, segments, "2026-06-02T00:00:00Z", final=True)
    assert (st.sums.known_ms, st.sums.customer_ms, st.sums.provider_ms) == (
        86_400_000,
        7_200_000,
        3_600_000,
    )
    sla = st.term("sla_availability")
    assert sla.so_far == 0.954545
    assert sla.levels[0].budget == 360.0  # 0.05 · 79,200 - 3,600
    assert sla.state is State.MET
    assert st.term("availability").so_far == 0.875
    assert st.term("availability").state is State.MISSED
    assert st.as_dict()["profile_hashes"] == {"m1": profile_hash(service_profile(c, profile))}


@pytest.mark.parametrize("declared_in", ["machine", "contract"])
def test_exclusion_window(declared_in: str) -> None:
    """4 h planned maintenance (08:00-12:00); the machine restarts at 12:30.

    Only the 30 min overrun is downtime (spec V07): P = 72,000, Bp = 1,800,
    SLA = 70,200 / 72,000 = 0.975. At 10:00, K = 28,800 and R = 12 h = 43,200 (the
    maintenance is not service time), so budget(0.98) = 0.02 · 72,000 = 1,440 s.
    """
    window = UtcInterval(
        start_ms=parse_instant("2026-06-01T08:00:00Z"),
        end_ms=parse_instant("2026-06-01T12:00:00Z"),
        reason="maintenance",
    )
    if declared_in == "machine":
        profile = KpiProfile(ideal_cycle_time_s=2.0, exclusions=(window,))
        calendar = ServiceCalendar(kind=CalendarKind.ALWAYS)
    else:
        profile = KpiProfile(ideal_cycle_time_s=2.0)
        calendar = ServiceCalendar(kind=CalendarKind.ALWAYS, exclusions=(window,))
    segments: list[Segment] = [
        ("2026-06-01T00:00:00Z", "2026-06-01T08:00:00Z", 1, 0, True),
        ("2026-06-01T08:00:00Z", "2026-06-01T12:30:00Z", 0, 17, True),
        ("2026-06-01T12:30:00Z", "2026-06-02T00:00:00Z", 1, 0, True),
    ]
    c = contract(term(Kpi.SLA_AVAILABILITY, 0.98), calendar=calendar, **DAY_PERIOD)
    live = _status(c, profile, segments, "2026-06-01T10:00:00Z")
    assert live.sums.known_ms == 28_800_000
    assert live.sums.remaining_ms == 43_200_000
    sla = live.term("sla_availability")
    assert (sla.so_far, sla.levels[0].budget, sla.state) == (1.0, 1_440.0, State.ON_TRACK)
    end = _status(c, profile, segments, "2026-06-02T00:00:00Z", final=True)
    assert (end.sums.planned_ms, end.sums.provider_ms) == (72_000_000, 1_800_000)
    sla = end.term("sla_availability")
    assert sla.so_far == 0.975
    assert sla.state is State.MISSED  # 0.975 < 0.98
    assert sla.levels[0].budget == -360.0  # 0.02 · 72,000 - 1,800


def test_not_measurable_after_a_comms_loss() -> None:
    """2 h 24 min of bad reads in a day: coverage 0.9 < 0.95, the SLA is not measurable.

    The data-coverage term (>= 99 %) is breached as soon as the unknown time exceeds
    1 % of the day (864 s) and missed at the end; the SLA term is not judged at all.
    """
    profile = KpiProfile(ideal_cycle_time_s=2.0)
    segments: list[Segment] = [
        ("2026-06-01T00:00:00Z", "2026-06-01T12:00:00Z", 1, 0, True),
        ("2026-06-01T12:00:00Z", "2026-06-01T14:24:00Z", 0, 0, False),
        ("2026-06-01T14:24:00Z", "2026-06-02T00:00:00Z", 1, 0, True),
    ]
    c = contract(term(Kpi.SLA_AVAILABILITY, 0.98), term(Kpi.DATA_COVERAGE, 0.99), **DAY_PERIOD)
    live = _status(c, profile, segments, "2026-06-01T15:00:00Z")
    cov = live.term("data_coverage")
    assert cov.levels[0].budget == -7_776.0  # 0.01 · 86,400 - 8,640
    assert cov.state is State.BREACHED
    end = _status(c, profile, segments, "2026-06-02T00:00:00Z", final=True)
    assert end.data_coverage == 0.9
    assert end.term("sla_availability").state is State.NOT_MEASURABLE
    assert end.term("data_coverage").state is State.MISSED
    assert "low_coverage" in end.flags


def test_month_across_the_spring_forward() -> None:
    """Europe/Paris, March 2026, 24/7: 743 h. 7 h 25 min 48 s of provider breakdown is 1 %.

    0.01 · 743 h = 26,748 s, so the month ends at exactly 99 % and meets a 99 % target
    (with a 744 h month it would read 0.990014). Mid-month (15 March, 00:00 local),
    K = 336 h and R = 407 h: the budget left is 0.01 · 2,674,800 - 26,748 = 0 s, at risk.
    """
    profile = KpiProfile(ideal_cycle_time_s=2.0, timezone="Europe/Paris")
    c = contract(term(Kpi.SLA_AVAILABILITY, 0.99), timezone="Europe/Paris")
    segments: list[Segment] = [
        ("2026-02-28T23:00:00Z", "2026-03-10T08:00:00Z", 1, 0, True),
        ("2026-03-10T08:00:00Z", "2026-03-10T15:25:48Z", 0, 17, True),
        ("2026-03-10T15:25:48Z", "2026-03-31T22:00:00Z", 1, 0, True),
    ]
    live = _status(c, profile, segments, "2026-03-14T23:00:00Z")
    assert live.period.name == "month:2026-03"
    assert (live.sums.known_ms, live.sums.remaining_ms) == (336 * 3_600_000, 407 * 3_600_000)
    sla = live.term("sla_availability")
    assert sla.levels[0].budget == 0.0
    assert sla.state is State.AT_RISK
    end = _status(c, profile, segments, "2026-03-31T22:00:00Z", final=True)
    assert end.sums.planned_ms == 743 * 3_600_000
    assert end.term("sla_availability").so_far == 0.99
    assert end.term("sla_availability").state is State.MET
    assert end.sums.planned_ms / 1000 / DAY == pytest.approx(30.958333, abs=1e-6)
