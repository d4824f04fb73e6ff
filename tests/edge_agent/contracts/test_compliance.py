"""Compliance so far, best, worst, budget, forecast and states with known answers (spec §3.13).

Every expected figure below is written from the spec's worked example or worked
by hand from the §3.8 to §3.13 formulas (the arithmetic is in the comments),
never read back from the code.
"""

from __future__ import annotations

import pytest

from edge_agent.contracts import (
    ContractStatus,
    Kpi,
    State,
    Term,
    evaluate_contract,
    period_at,
    remaining_service_s,
    service_profile,
)
from edge_agent.contracts.periods import Period
from edge_agent.kpi import KpiProfile
from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.record import derive
from edge_agent.kpi.timeutil import parse_instant

from .support import DAY, H, components, contract, machine, term

JUNE = parse_instant("2026-06-01T00:00:00Z")  # a 30-day month, 24/7 in UTC
SLA = term(Kpi.SLA_AVAILABILITY, 0.98, 0.95)


def _june(t: str = "2026-06-11T00:00:00Z") -> tuple[Period, int]:
    c = contract(SLA)
    t_ms = parse_instant(t)
    period = period_at(c, t_ms)
    assert period is not None
    return period, t_ms


def _worked_example(provider_s: float) -> dict[str, object]:
    """Spec §3.13: 10 days of a 30-day month, fully measured; 4 h provider + 1 h customer."""
    # Four provider breakdowns (provider_s in total) and one customer breakdown of 1 h.
    customer = 3600.0
    return components(
        planned_time_s=10 * DAY,
        running_time_s=10 * DAY - provider_s - customer,
        downtime_breakdown_s=provider_s + customer,
        downtime_customer_s=customer,
        downtime_provider_s=provider_s,
        failures=5,
        ttr_sum_s=provider_s + customer,
    )


def test_remaining_service_time_of_the_worked_example() -> None:
    """After 10 days of a 30-day 24/7 month, R = 20 days = 1,728,000 s."""
    period, t_ms = _june()
    assert (period.name, period.start_ms) == ("month:2026-06", JUNE)
    planner = Planner(service_profile(contract(SLA), KpiProfile(ideal_cycle_time_s=1.0)))
    assert remaining_service_s(planner, period, t_ms) == 1_728_000


def test_spec_worked_example() -> None:
    """K = 864,000, C = 3,600, Bp = 14,400, R = 1,728,000: the figures of spec §3.13."""
    period, t_ms = _june()
    status = evaluate_contract(
        contract(SLA),
        period,
        [machine(_worked_example(14_400), remaining_s=1_728_000)],
        at_ms=t_ms,
    )
    sla = status.term("sla_availability")
    assert sla.so_far == 0.983264  # 846,000 / 860,400
    assert sla.best == 0.994437  # 2,574,000 / 2,588,400
    assert sla.worst == 0.326843  # 846,000 / 2,588,400
    assert sla.forecast == 0.983264  # 2,538,000 / 2,581,200
    target, minimum = sla.levels
    assert (target.level, target.threshold, target.budget) == ("target", 0.98, 37_368.0)
    assert (minimum.level, minimum.threshold, minimum.budget) == ("minimum", 0.95, 115_020.0)
    assert sla.pace == 28_800.0  # Bp·R/K
    assert sla.margin == 3_600.0  # MTTR: 5 h over 5 failures
    assert target.state is minimum.state is sla.state is State.ON_TRACK


def test_spec_worked_example_at_risk() -> None:
    """Spec §3.13: had Bp been 40,000 s, budget(0.98) = 11,768 s < pace 80,000 s: at risk."""
    period, t_ms = _june()
    status = evaluate_contract(
        contract(SLA),
        period,
        [machine(_worked_example(40_000), remaining_s=1_728_000)],
        at_ms=t_ms,
    )
    sla = status.term("sla_availability")
    target, minimum = sla.levels
    assert target.budget == 11_768.0  # 51,768 - 40,000
    assert sla.pace == 80_000.0  # 40,000 · 1,728,000 / 864,000
    assert target.state is State.AT_RISK
    # budget(0.95) = 129,420 - 40,000 = 89,420 >= max(80,000, MTTR 8,720): on track.
    assert minimum.budget == 89_420.0
    assert minimum.state is State.ON_TRACK
    assert sla.state is State.AT_RISK


def test_breached_on_the_target_but_not_the_minimum() -> None:
    """Day 20, Bp = 55,000 s: the 98 % target can no longer be met, the 95 % minimum can."""
    period, t_ms = _june("2026-06-21T00:00:00Z")
    comp = components(
        planned_time_s=20 * DAY,
        running_time_s=20 * DAY - 55_000,
        downtime_breakdown_s=55_000,
        downtime_provider_s=55_000,
        failures=5,
        ttr_sum_s=55_000,
    )
    status = evaluate_contract(
        contract(SLA), period, [machine(comp, remaining_s=10 * DAY)], at_ms=t_ms
    )
    sla = status.term("sla_availability")
    assert sla.so_far == 0.968171  # 1,673,000 / 1,728,000
    assert sla.best == 0.978781  # 2,537,000 / 2,592,000 < 0.98
    assert sla.worst == 0.645448  # 1,673,000 / 2,592,000
    target, minimum = sla.levels
    assert target.budget == -3_160.0  # 0.02 · 2,592,000 - 55,000
    assert target.state is State.BREACHED
    # 0.05 · 2,592,000 - 55,000 = 74,600 >= max(pace 27,500, MTTR 11,000)
    assert minimum.budget == 74_600.0
    assert sla.pace == 27_500.0
    assert minimum.state is State.ON_TRACK
    assert sla.state is State.BREACHED  # the worse of the two


def test_closed_period_met() -> None:
    """The worked month ends with 10 h provider and 1 h customer downtime: 98.61 %, both met."""
    c = contract(SLA)
    period, _ = _june()
    comp = _worked_example(36_000) | {
        "planned_time_s": 30 * DAY,
        "running_time_s": 30 * DAY - 39_600,
    }
    status = evaluate_contract(
        c, period, [machine(comp, remaining_s=0.0)], at_ms=period.end_ms, final=True
    )
    sla = status.term("sla_availability")
    assert sla.so_far == sla.best == sla.worst == 0.986092  # 1 - 36,000 / 2,588,400
    target, minimum = sla.levels
    assert target.budget == 15_768.0  # 0.02 · 2,588,400 - 36,000
    assert target.state is minimum.state is sla.state is State.MET
    assert status.final


def test_closed_period_missed_on_the_target_only() -> None:
    """A closed month at 96.8 % misses 98 % and meets 95 %: the term is missed."""
    period, _ = _june()
    comp = components(
        planned_time_s=30 * DAY,
        running_time_s=30 * DAY - 82_944,
        downtime_breakdown_s=82_944,
        downtime_provider_s=82_944,  # 3.2 % of 2,592,000
        failures=4,
        ttr_sum_s=82_944,
    )
    status = evaluate_contract(
        contract(SLA), period, [machine(comp, remaining_s=0.0)], at_ms=period.end_ms, final=True
    )
    sla = status.term("sla_availability")
    assert sla.so_far == 0.968
    assert [lv.state for lv in sla.levels] == [State.MISSED, State.MET]
    assert sla.state is State.MISSED


def test_not_measurable_below_min_coverage() -> None:
    """10 % of the month unknown: coverage 0.9 < 0.95; SLA is not measurable, coverage missed."""
    coverage = term(Kpi.DATA_COVERAGE, 0.99)
    c = contract(SLA, coverage)
    period, _ = _june()
    comp = components(
        planned_time_s=30 * DAY,
        unknown_time_s=3 * DAY,
        running_time_s=27 * DAY,
    )
    status = evaluate_contract(
        c, period, [machine(comp, remaining_s=0.0)], at_ms=period.end_ms, final=True
    )
    assert status.data_coverage == 0.9
    sla = status.term("sla_availability")
    assert sla.so_far == 1.0  # the measured time was all up: a figure, but not a settlement
    assert [lv.state for lv in sla.levels] == [State.NOT_MEASURABLE] * 2
    assert sla.state is State.NOT_MEASURABLE
    cov = status.term("data_coverage")
    assert cov.so_far == 0.9
    assert cov.state is State.MISSED
    assert cov.levels[0].budget == -233_280.0  # 0.01 · 2,592,000 - 259,200
    assert "low_coverage" in status.flags


def test_coverage_exactly_at_the_minimum_is_measurable() -> None:
    """min_coverage is inclusive: 95 % coverage with min_coverage 0.95 is measurable."""
    period, _ = _june()
    comp = components(planned_time_s=100_000, unknown_time_s=5_000, running_time_s=95_000)
    status = evaluate_contract(
        contract(SLA), period, [machine(comp, remaining_s=0.0)], at_ms=period.end_ms, final=True
    )
    assert status.term("sla_availability").state is State.MET
    assert "low_coverage" not in status.flags


def test_start_of_period_with_nothing_measured() -> None:
    """At the first instant: no value yet, best 1, worst 0, the whole budget ahead, on track."""
    period, _ = _june()
    status = evaluate_contract(
        contract(SLA),
        period,
        [machine(components(), remaining_s=30 * DAY)],
        at_ms=period.start_ms,
    )
    sla = status.term("sla_availability")
    assert (sla.so_far, sla.forecast, sla.best, sla.worst) == (None, None, 1.0, 0.0)
    assert sla.levels[0].budget == 51_840.0  # 0.02 · 2,592,000
    assert sla.pace == 0.0
    assert sla.state is State.ON_TRACK
    assert status.data_coverage is None


def test_fixed_margin_overrides_the_mttr() -> None:
    """at_risk_margin_s = 40,000: a budget of 37,368 s is now below the margin, so at risk."""
    period, t_ms = _june()
    status = evaluate_contract(
        contract(SLA, at_risk_margin_s=40_000.0),
        period,
        [machine(_worked_example(14_400), remaining_s=1_728_000)],
        at_ms=t_ms,
    )
    sla = status.term("sla_availability")
    assert sla.margin == 40_000.0
    assert [lv.state for lv in sla.levels] == [State.AT_RISK, State.ON_TRACK]


# -- several machines: sums, never averages -----------------------------------------------


def test_two_machines_are_summed_not_averaged() -> None:
    """Performance of two machines is Σ ideal time / Σ operating time, not the mean of both."""
    period, t_ms = _june()
    a = components(
        planned_time_s=8 * H,
        running_time_s=27_000,
        downtime_breakdown_s=1_800,
        downtime_provider_s=1_800,
        failures=1,
        ttr_sum_s=1_800,
        total_count=12_150,
        good_count=11_910,
    )
    b = components(planned_time_s=8 * H, running_time_s=8 * H, total_count=9_000, good_count=9_000)
    c = contract(term(Kpi.PERFORMANCE, 0.9), term(Kpi.SLA_AVAILABILITY, 0.95), machines=("a", "b"))
    status = evaluate_contract(
        c,
        period,
        [machine(a, remaining_s=0.0, name="a"), machine(b, remaining_s=0.0, name="b", ict=3.0)],
        at_ms=t_ms,
    )
    # a: 2 s x 12,150 = 24,300 s ideal over 27,000 s (0.9); b: 3 s x 9,000 = 27,000 over 28,800
    # (0.9375). Together 51,300 / 55,800 = 0.919355, not (0.9 + 0.9375) / 2 = 0.91875.
    assert status.term("performance").so_far == 0.919355
    assert status.term("sla_availability").so_far == 0.96875  # (57,600 - 1,800) / 57,600
    assert dict(status.as_dict()["profile_hashes"]) == {"a": "hash-of-a", "b": "hash-of-b"}


def test_inputs_must_match_the_contract_machines() -> None:
    """Feeding the wrong machines, or a final record before the end, is a programming error."""
    period, t_ms = _june()
    with pytest.raises(ValueError, match="inputs for"):
        evaluate_contract(
            contract(SLA), period, [machine(components(), remaining_s=0, name="x")], at_ms=t_ms
        )
    with pytest.raises(ValueError, match="final"):
        evaluate_contract(
            contract(SLA), period, [machine(components(), remaining_s=0)], at_ms=t_ms, final=True
        )


# -- the other KPIs, from public vector V01's shift (8 h, A 0.9375, P 0.9, Q 0.980247) -------

V01 = components(
    planned_time_s=28_800,
    running_time_s=27_000,
    downtime_breakdown_s=1_800,
    downtime_provider_s=1_800,
    failures=1,
    ttr_sum_s=1_800,
    total_count=12_150,
    good_count=11_910,
)


def _status(*terms: Term) -> ContractStatus:
    """V01's shift as the period so far, with one more 8 h shift of service time to come."""
    period, t_ms = _june()
    return evaluate_contract(
        contract(*terms), period, [machine(V01, remaining_s=28_800)], at_ms=t_ms
    )


def test_oee_figures_over_a_period() -> None:
    """OEE so far equals the KPI record's OEE; best: 8 more ideal hours; worst: 8 h more down."""
    st = _status(term(Kpi.OEE, 0.85), Term(name="stretch", kpi=Kpi.OEE, target=0.95))
    oee = st.term("oee")
    rest = ("calendar_time_s", "excluded_time_s", "non_scheduled_time_s", "stops", "micro_stops")
    rest += ("out_of_plan_total_count", "out_of_plan_good_count")
    record = derive(V01 | dict.fromkeys(rest, 0) | {"downtime_by_code": {}}, 2.0, 0.95)
    assert oee.so_far == 0.827083 == record["oee"]
    # best: A = 55,800/57,600, P = 53,100/55,800, Q = 26,310/26,550 (14,400 good parts more)
    assert oee.best == 0.913542
    assert oee.worst == 0.413542  # 27,000/57,600 · 0.9 · 11,910/12,150
    assert oee.forecast == 0.827083
    assert oee.state is State.AT_RISK  # forecast < 0.85 <= best
    assert oee.levels[0].budget is None
    assert st.term("stretch").state is State.BREACHED


def test_performance_and_quality_figures() -> None:
    """Performance 0.9 and quality 0.980247 so far, with the stated best and worst cases."""
    st = _status(term(Kpi.PERFORMANCE, 0.85), term(Kpi.QUALITY, 0.99))
    perf = st.term("performance")
    assert (perf.so_far, perf.best, perf.worst) == (0.9, 0.951613, 0.435484)
    assert perf.state is State.ON_TRACK
    qual = st.term("quality")
    assert (qual.so_far, qual.best, qual.worst) == (0.980247, 0.99096, 0.448588)
    assert qual.state is State.AT_RISK  # best 0.99096 >= 0.99 > forecast


def test_throughput_and_cycle_time_figures() -> None:
    """1,518.75 parts/h and 2.222222 s per part so far; best cases at the ideal 2 s cycle."""
    st = _status(
        term(Kpi.THROUGHPUT, 1600),
        term(Kpi.CYCLE_TIME, 2.1),
    )
    tp = st.term("throughput_per_h")
    assert (tp.so_far, tp.best, tp.worst) == (1518.75, 1659.375, 759.375)
    assert tp.state is State.AT_RISK
    ct = st.term("actual_cycle_time_s")
    assert (ct.so_far, ct.best, ct.worst) == (2.222222, 2.101695, None)
    assert ct.state is State.BREACHED  # even 8 ideal hours leave 55,800/26,550 > 2.1 s


@pytest.mark.parametrize(
    ("ttr_s", "budget", "state"),
    [
        (5_400, 2_700.0, State.ON_TRACK),  # MTTR 1,800; 3 · 2,700 - 5,400 >= margin 1,800
        (7_200, 900.0, State.AT_RISK),  # MTTR 2,400; budget 900 < margin 2,400
        (9_000, -900.0, State.BREACHED),  # MTTR 3,000 > 2,700
    ],
)
def test_mttr_budget_and_states(ttr_s: float, budget: float, state: State) -> None:
    """MTTR ≤ 45 min with 3 failures: the repair time still allowed is 3 · 2,700 - Σ TTR."""
    comp = V01 | {"failures": 3, "ttr_sum_s": ttr_s}
    c = contract(term(Kpi.MTTR, 2_700))
    period, t_ms = _june()
    st = evaluate_contract(c, period, [machine(comp, remaining_s=DAY)], at_ms=t_ms)
    mttr = st.term("mttr_s")
    assert mttr.so_far == ttr_s / 3
    assert mttr.levels[0].budget == budget
    assert mttr.state is state


def test_mttr_without_failures_is_met() -> None:
    """No breakdown in the period: MTTR is undefined, and a closed period meets the level."""
    c = contract(term(Kpi.MTTR, 2_700))
    period, _ = _june()
    comp = components(planned_time_s=30 * DAY, running_time_s=30 * DAY)
    st = evaluate_contract(
        c, period, [machine(comp, remaining_s=0)], at_ms=period.end_ms, final=True
    )
    assert st.term("mttr_s").so_far is None
    assert st.term("mttr_s").state is State.MET


def test_availability_budget() -> None:
    """OEE availability 0.9375 ≥ 0.9: downtime still allowed 0.1 · 57,600 - 1,800 = 3,960 s."""
    st = _status(term(Kpi.AVAILABILITY, 0.9))
    av = st.term("availability")
    assert av.so_far == 0.9375
    assert av.levels[0].budget == 3_960.0
    # pace 1,800 · 28,800 / 28,800 = 1,800; margin MTTR 1,800: 3,960 >= 1,800, on track
    assert av.state is State.ON_TRACK
