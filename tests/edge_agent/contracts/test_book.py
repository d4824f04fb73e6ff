"""The contract book: windows in, status, alerts on worsening, period records and revisions.

A 10-day explicit period, 24/7 in UTC, SLA availability >= 99 % (minimum 95 %) and a
response time max <= 1 h. Figures are worked by hand in the comments.
"""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.contracts import (
    CalendarKind,
    Kpi,
    PeriodKind,
    ServiceCalendar,
    service_profile,
)
from edge_agent.contracts.book import ContractBook, chunk_at
from edge_agent.kpi import KpiProfile
from edge_agent.kpi.events import StopClass
from edge_agent.kpi.timeutil import parse_instant

from .support import DAY, components, contract, response_term, term

T0 = parse_instant("2026-06-01T00:00:00Z")
D = 86_400_000  # a day in ms
C = contract(
    term(Kpi.SLA_AVAILABILITY, 0.99, 0.95),
    response_term(100, 3_600),
    period=PeriodKind.DATES,
    start_ms=T0,
    end_ms=T0 + 10 * D,
)
PROFILE = service_profile(C, KpiProfile(ideal_cycle_time_s=2.0))
NONE: dict[str, tuple[int | None, int | None]] = {}


def _book() -> ContractBook:
    return ContractBook(C, {"m1": PROFILE}, allowed_lateness_s=60)


def _feed(
    book: ContractBook, days: float, provider_s: float, failures: int, *, final: bool = False
) -> None:
    chunk = chunk_at(C, T0)
    assert chunk is not None
    comp = components(
        planned_time_s=days * DAY,
        running_time_s=days * DAY - provider_s,
        downtime_breakdown_s=provider_s,
        downtime_provider_s=provider_s,
        failures=failures,
        ttr_sum_s=provider_s,
    )
    book.take("m1", chunk.name, chunk.start_ms, chunk.end_ms, comp, final=final)


def _levels(status: dict[str, Any], name: str = "sla_availability") -> list[tuple[str, float]]:
    t = next(t for t in status["terms"] if t["term"] == name)
    return [(lv["state"], lv["budget"]) for lv in t["levels"]]


def test_the_period_is_one_window() -> None:
    """A dates period is one KPI window named after the contract and the period."""
    chunk = chunk_at(C, T0 + 3 * D)
    assert chunk is not None
    assert chunk.name == "contract:c:dates:2026-06-01T00:00:00Z/2026-06-11T00:00:00Z"
    assert (chunk.start_ms, chunk.end_ms) == (T0, T0 + 10 * D)
    assert chunk_at(C, T0 + 10 * D) is None


def test_rolling_windows_are_days_and_a_period_sums_thirty() -> None:
    """rolling_30d: each local day is a window; a period's status sums 30 of them."""
    rolling = contract(term(Kpi.SLA_AVAILABILITY, 0.9), period=PeriodKind.ROLLING_30D)
    book = ContractBook(
        rolling,
        {"m1": service_profile(rolling, KpiProfile(ideal_cycle_time_s=1))},
        allowed_lateness_s=0,
    )
    for day in range(31):  # 31 days, each with 864 s of provider downtime (1 %)
        chunk = chunk_at(rolling, T0 + day * D)
        assert chunk is not None
        assert chunk.end_ms - chunk.start_ms == D
        comp = components(
            planned_time_s=DAY,
            running_time_s=DAY - 864,
            downtime_breakdown_s=864,
            downtime_provider_s=864,
            failures=1,
            ttr_sum_s=864,
        )
        book.take("m1", chunk.name, chunk.start_ms, chunk.end_ms, comp, final=True)
    out = book.round(T0 + 31 * D - 1, NONE)  # last instant of day 31
    assert out.status is not None
    assert out.status["period"] == "rolling_30d:2026-07-01"
    comp = out.status["components"]
    assert comp["planned_time_s"] == 30 * DAY  # days 2..31, not day 1
    assert comp["downtime_provider_s"] == 30 * 864
    assert out.status["terms"][0]["so_far"] == 0.99


def test_alerts_when_a_level_gets_worse_and_only_then() -> None:
    """On track, at risk (alert), at risk again (no alert), breached (alert); minimum on track."""
    book = _book()
    _feed(book, 2, 1_000, 1)
    out = book.round(T0 + 2 * D, NONE)
    # budget(0.99) = 0.01 · 864,000 - 1,000 = 7,640 >= pace 1,000 · 8/2 = 4,000
    assert _levels(out.status)[0] == ("on_track", 7_640.0)  # type: ignore[arg-type]
    assert out.alerts == []
    _feed(book, 4, 4_000, 2)
    out = book.round(T0 + 4 * D, NONE)
    # budget 8,640 - 4,000 = 4,640 < pace 4,000 · 6/4 = 6,000
    assert _levels(out.status)[0] == ("at_risk", 4_640.0)  # type: ignore[arg-type]
    (alert,) = out.alerts
    assert alert["alert"] == "level_state"
    assert (alert["term"], alert["level"], alert["previous"], alert["state"]) == (
        "sla_availability",
        "target",
        "on_track",
        "at_risk",
    )
    assert (alert["budget"], alert["budget_unit"], alert["remaining_service_s"]) == (
        4_640.0,
        "s",
        6 * DAY,
    )
    assert book.round(T0 + 4 * D + 60_000, NONE).alerts == []
    _feed(book, 6, 9_000, 3)
    out = book.round(T0 + 6 * D, NONE)
    # target: 8,640 - 9,000 = -360; minimum: 43,200 - 9,000 = 34,200 >= pace 6,000
    assert _levels(out.status) == [("breached", -360.0), ("on_track", 34_200.0)]  # type: ignore[arg-type]
    (alert,) = out.alerts
    assert (alert["previous"], alert["state"], alert["budget"]) == ("at_risk", "breached", -360.0)
    assert alert["alert_id"].endswith("sla_availability/target/breached/0")


def test_period_record_then_a_revision_from_late_data() -> None:
    """Closed at end + lateness: 1 - 9,000/864,000 = 0.989583 misses 99 %; late data: met."""
    book = _book()
    _feed(book, 10, 9_000, 3, final=True)
    assert book.round(T0 + 10 * D, NONE).periods == []  # within the lateness
    out = book.round(T0 + 10 * D + 60_000, NONE)
    (record,) = out.periods
    assert out.status is None  # no period holds the instant any more
    assert (record["final"], record["revision"], record["at"]) == (True, 0, "2026-06-11T00:01:00Z")
    sla = record["terms"][0]
    assert sla["so_far"] == 0.989583
    assert [lv["state"] for lv in sla["levels"]] == ["missed", "met"]
    assert book.round(T0 + 10 * D + 120_000, NONE).periods == []  # nothing changed
    _feed(book, 10, 8_000, 3, final=True)  # a revised window: 1,000 s fewer
    (revised,) = book.round(T0 + 10 * D + 180_000, NONE).periods
    assert revised["revision"] == 1
    assert revised["terms"][0]["so_far"] == 0.990741  # 1 - 8,000 / 864,000
    assert [lv["state"] for lv in revised["terms"][0]["levels"]] == ["met", "met"]


def test_unreported_service_time_is_unknown() -> None:
    """No window reported for the first 2 days: those 172,800 s are planned and unknown."""
    book = _book()
    out = book.round(T0 + 2 * D, NONE)
    comp = out.status["components"]  # type: ignore[index]
    assert (comp["planned_time_s"], comp["unknown_time_s"]) == (2 * DAY, 2 * DAY)
    assert out.status["data_coverage"] == 0.0  # type: ignore[index]


def test_response_bound_crossing_is_dated_at_the_bound() -> None:
    """b2 starts on day 5 at 00:00 and is never answered: breach at 01:00, seen on day 6."""
    book = _book()
    book.stop("m1", "m1@b1", T0 + D, StopClass.BREAKDOWN, 17)
    book.stop("m1", "m1@b2", T0 + 5 * D, StopClass.BREAKDOWN, 17)
    book.stop("m1", "m1@micro", T0 + 5 * D, StopClass.MICRO, 17)  # not a breakdown
    answers = {"m1@b1": (T0 + D + 1_800_000, None)}
    book.round(T0 + 4 * D, answers)
    out = book.round(T0 + 6 * D, answers)
    crossings = [a for a in out.alerts if a["alert"] == "response_bound_crossed"]
    assert [(a["event_id"], a["at"], a["level"]) for a in crossings] == [
        ("m1@b2", "2026-06-06T01:00:00Z", "target")
    ]
    resp = next(t for t in out.status["terms"] if t["term"] == "response_time_s")  # type: ignore[index]
    assert resp["state"] == "breached"
    assert resp["so_far"] == DAY  # b2 unanswered for a day so far (a lower bound)
    assert book.round(T0 + 6 * D + 60_000, answers).alerts == []  # reported once


def test_customer_breakdowns_are_not_response_cases() -> None:
    """A breakdown on a customer code (42) never enters the response-time term."""
    profile = KpiProfile(ideal_cycle_time_s=2.0, customer_fault_codes=((42, 42),))
    book = ContractBook(C, {"m1": service_profile(C, profile)}, allowed_lateness_s=60)
    book.stop("m1", "m1@x", T0, StopClass.BREAKDOWN, 42)
    assert book.breakdowns == {}


def test_answer_after_close_revises_the_period() -> None:
    """A breakdown 30 min before the end, answered after the close: revised at the answer."""
    book = _book()
    _feed(book, 10, 0, 0, final=True)
    start = T0 + 10 * D - 1_800_000
    book.stop("m1", "m1@late", start, StopClass.BREAKDOWN, 17)
    (first,) = book.round(T0 + 10 * D + 60_000, NONE).periods
    resp = next(t for t in first["terms"] if t["term"] == "response_time_s")
    assert resp["levels"][0]["pending"] == 1  # 31 min elapsed at the close, bound 1 h
    assert resp["state"] == "met"
    answered = T0 + 10 * D + 1_260_000  # 51 min after the onset: in time
    (rev,) = book.round(T0 + 10 * D + 1_500_000, {"m1@late": (answered, None)}).periods
    assert (rev["revision"], rev["at"]) == (1, "2026-06-11T00:21:00Z")
    resp = next(t for t in rev["terms"] if t["term"] == "response_time_s")
    assert (resp["so_far"], resp["levels"][0]["pending"], resp["state"]) == (3_060.0, 0, "met")


def test_unanswered_after_close_revises_at_the_crossing() -> None:
    """Never answered: the closed period is revised to missed, dated at start + 1 h."""
    book = _book()
    _feed(book, 10, 0, 0, final=True)
    book.stop("m1", "m1@late", T0 + 10 * D - 1_800_000, StopClass.BREAKDOWN, 17)
    book.round(T0 + 10 * D + 60_000, NONE)
    out = book.round(T0 + 10 * D + 7_200_000, NONE)
    (rev,) = out.periods
    assert rev["at"] == "2026-06-11T00:30:00Z"
    resp = next(t for t in rev["terms"] if t["term"] == "response_time_s")
    assert resp["state"] == "missed"
    assert [a["at"] for a in out.alerts] == ["2026-06-11T00:30:00Z"]


def test_state_round_trip_continues_identically() -> None:
    """A book restored from its state gives the same next round as the original."""
    book = _book()
    _feed(book, 4, 4_000, 2)
    book.stop("m1", "m1@b", T0 + 3 * D, StopClass.BREAKDOWN, 17)
    book.round(T0 + 4 * D, NONE)
    copy = _book()
    copy.restore(book.to_state())
    _feed(book, 6, 9_000, 3)
    _feed(copy, 6, 9_000, 3)
    a, b = book.round(T0 + 6 * D, NONE), copy.round(T0 + 6 * D, NONE)
    assert (a.status, a.alerts, a.periods) == (b.status, b.alerts, b.periods)
    with pytest.raises(ValueError, match="version"):
        copy.restore({"version": 99})


def test_book_needs_every_machine_profile() -> None:
    """A contract machine without a service profile is a programming error."""
    with pytest.raises(ValueError, match="m1"):
        ContractBook(C, {}, allowed_lateness_s=0)


def test_windows_of_other_contracts_are_ignored() -> None:
    """Only the book's own windows count."""
    book = _book()
    book.take("m1", "contract:other:x", T0, T0 + D, components(planned_time_s=DAY), final=True)
    book.take("m2", "contract:c:x", T0, T0 + D, components(planned_time_s=DAY), final=True)
    assert book.chunks == {"m1": {}}


def test_always_calendar_profile() -> None:
    """The book's service profile here is 24/7 (the shifts are the contract's)."""
    assert C.calendar == ServiceCalendar(kind=CalendarKind.ALWAYS)
    assert PROFILE.shifts[0].start_min == PROFILE.shifts[0].end_min == 0
