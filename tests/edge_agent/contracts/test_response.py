"""Response time: nearest-rank statistics, late and pending counts, breaches at the bound.

Responses are in whole seconds from an epoch of 0 to keep the arithmetic readable;
the expected figures are worked by hand in the comments.
"""

from __future__ import annotations

import pytest

from edge_agent.contracts import Breakdown, ResponseTo, State, bound_crossings, evaluate_contract
from edge_agent.contracts.periods import Period
from edge_agent.contracts.response import (
    allowed_late,
    count_against,
    nearest_rank,
    response_values,
)

from .support import components, contract, machine, response_term

S = 1000  # ms per s
ACK = ResponseTo.ACKNOWLEDGED
BOUND = 14_400  # 4 h
PERIOD = Period("p", 0, 30 * 86_400 * S)


def _b(
    event: str, start_s: int, ack_s: int | None = None, arrive_s: int | None = None
) -> Breakdown:
    return Breakdown(
        event_id=event,
        start_ms=start_s * S,
        acknowledged_ms=None if ack_s is None else ack_s * S,
        arrived_ms=None if arrive_s is None else arrive_s * S,
    )


def test_nearest_rank_percentiles() -> None:
    """The textbook nearest-rank example: 15, 20, 35, 40, 50."""
    values = [50, 20, 35, 15, 40]
    assert nearest_rank(values, 5) == 15  # rank ceil(0.25) = 1
    assert nearest_rank(values, 30) == 20  # rank ceil(1.5) = 2
    assert nearest_rank(values, 40) == 20  # rank 2
    assert nearest_rank(values, 50) == 35  # rank ceil(2.5) = 3
    assert nearest_rank(values, 100) == 50  # the maximum
    assert nearest_rank([], 90) is None


def test_allowed_late_responses() -> None:
    """p90 of 10 responses tolerates 1 above the bound, of 9 none; max tolerates none."""
    assert allowed_late(10, 90) == 1  # 10 - ceil(9.0)
    assert allowed_late(9, 90) == 0  # 9 - ceil(8.1)
    assert allowed_late(20, 90) == 2
    assert allowed_late(10, 100) == 0


# Four breakdowns (s): b1 acknowledged after 1 h, b2 after 5 h (late), b3 after 2 h,
# b4 never acknowledged.
MAX_CASE = [
    _b("b1", 0, ack_s=3_600),
    _b("b2", 10_000, ack_s=28_000),
    _b("b3", 20_000, ack_s=27_200),
    _b("b4", 30_000),
]


def test_bound_crossings_are_dated_at_start_plus_bound() -> None:
    """b2 (answered late) crosses at 24,400 s and b4 (never answered) at 44,400 s."""
    assert bound_crossings(MAX_CASE, ACK, BOUND * S, 0, 100_000 * S) == [
        ("b2", 24_400 * S),
        ("b4", 44_400 * S),
    ]
    # Crossings are reported once, in the interval they fall in.
    assert bound_crossings(MAX_CASE, ACK, BOUND * S, 24_400 * S, 100_000 * S) == [
        ("b4", 44_400 * S)
    ]
    # An answer exactly at the bound is in time.
    assert bound_crossings([_b("x", 0, ack_s=BOUND)], ACK, BOUND * S, 0, 10**9) == []


def test_max_breaches_at_the_instant_the_bound_passes() -> None:
    """With max <= 4 h: at risk while b2 is pending, breached from 24,400 s on, not later."""
    term = response_term(100, BOUND)
    c = contract(term)

    def state(t_s: int) -> tuple[State, float | None]:
        st = evaluate_contract(
            c, PERIOD, [machine(components(), remaining_s=0)], at_ms=t_s * S, breakdowns=MAX_CASE
        )
        rt = st.term("response_time_s")
        return rt.state, rt.so_far

    assert state(5_000) == (State.ON_TRACK, 3_600.0)  # b1 answered, nothing pending
    assert state(24_399) == (State.AT_RISK, 14_399.0)  # b2 unanswered for 14,399 s
    assert state(24_400) == (State.BREACHED, 14_400.0)  # the bound passes unanswered
    # Later, with b2 answered at 28,000: its response is 18,000 s.
    assert state(29_000)[1] == 18_000.0


def test_counts_against_a_bound() -> None:
    """At 40,000 s: b2 late; b3 answered in 7,200 s; b4 pending until 44,400 s."""
    counted = count_against(MAX_CASE, ACK, BOUND * S, 100, 40_000 * S)
    assert (counted.count, counted.late, counted.pending) == (4, 1, 1)
    assert counted.budget == -1
    assert counted.next_deadline_ms == 44_400 * S
    assert response_values(MAX_CASE, ACK, 40_000 * S) == [
        3_600 * S,
        18_000 * S,
        7_200 * S,
        10_000 * S,  # b4: its elapsed time, a lower bound of its response
    ]


# Ten breakdowns a day apart; responses (s): 600 .. 4,800 in steps of 600 except the last two,
# 20,000 and 30,000. p90 = the 9th smallest = 20,000.
P90_RESPONSES = [600, 1_200, 1_800, 2_400, 3_000, 3_600, 4_200, 4_800, 20_000, 30_000]
P90_CASE = [_b(f"e{i}", i * 86_400, ack_s=i * 86_400 + r) for i, r in enumerate(P90_RESPONSES)]


def test_p90_over_a_closed_period() -> None:
    """p90 = 20,000 s: misses 4 h (2 late, 1 allowed), meets 8 h (1 late, 1 allowed)."""
    c = contract(response_term(90, BOUND, 28_800))
    st = evaluate_contract(
        c,
        PERIOD,
        [machine(components(planned_time_s=1, running_time_s=1), remaining_s=0)],
        at_ms=PERIOD.end_ms,
        final=True,
        breakdowns=P90_CASE,
    )
    rt = st.term("response_time_s")
    assert rt.so_far == 20_000.0
    assert rt.count == 10
    assert rt.statistic == "p90"
    target, minimum = rt.levels
    assert (target.late, target.budget, target.state) == (2, -1.0, State.MISSED)
    assert (minimum.late, minimum.budget, minimum.state) == (1, 0.0, State.MET)
    assert rt.state is State.MISSED


def test_p90_tolerates_one_late_response_in_ten() -> None:
    """p90 of ten tolerates one response above the bound: the 9th smallest is then 4,800 s."""
    answers = [*P90_RESPONSES[:8], 20_000, 900]
    case = [_b(f"e{i}", i * 86_400, ack_s=i * 86_400 + r) for i, r in enumerate(answers)]
    counted = count_against(case, ACK, BOUND * S, 90, PERIOD.end_ms)
    assert (counted.late, counted.budget) == (1, 0)
    # sorted: 600 900 1200 1800 2400 3000 3600 4200 4800 20000; the 9th is 4,800
    assert nearest_rank(response_values(case, ACK, PERIOD.end_ms), 90) == 4_800 * S


def test_arrival_is_measured_separately() -> None:
    """A term to arrival uses arrived_at; acknowledgements do not count for it."""
    b = [_b("x", 0, ack_s=600, arrive_s=20_000)]
    assert response_values(b, ResponseTo.ARRIVED, 30_000 * S) == [20_000 * S]
    assert response_values(b, ResponseTo.ACKNOWLEDGED, 30_000 * S) == [600 * S]
    assert bound_crossings(b, ResponseTo.ARRIVED, BOUND * S, 0, 10**9) == [("x", BOUND * S)]


def test_an_answer_after_the_evaluation_instant_is_not_known_yet() -> None:
    """Replaying at t: an acknowledgement stamped later than t does not count at t."""
    b = [_b("x", 0, ack_s=20_000)]
    at_15000 = count_against(b, ACK, BOUND * S, 100, 15_000 * S)
    assert (at_15000.late, at_15000.pending) == (1, 0)  # unanswered at t, past the bound
    at_10000 = count_against(b, ACK, BOUND * S, 100, 10_000 * S)
    assert (at_10000.late, at_10000.pending) == (0, 1)


def test_only_breakdowns_that_started_in_the_period_count() -> None:
    """A breakdown of the previous period is not in this one's statistic."""
    before = Breakdown(event_id="old", start_ms=-3_600 * S)
    c = contract(response_term(100, BOUND))
    st = evaluate_contract(
        c,
        PERIOD,
        [machine(components(), remaining_s=0)],
        at_ms=86_400 * S,
        breakdowns=[before],
    )
    rt = st.term("response_time_s")
    assert (rt.count, rt.so_far, rt.state) == (0, None, State.ON_TRACK)


def test_statistic_validation() -> None:
    """Percentiles outside 1..100 are refused."""
    with pytest.raises(ValueError, match="percentile"):
        nearest_rank([1], 0)
