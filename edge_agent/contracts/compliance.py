"""The state of one term per level: on track, at risk, breached; met, missed, not measurable.

Spec §3.13, per level ``a`` of a term:

* **during the period** (``final`` False):

  - budget KPIs (SLA availability, availability, data coverage): ``breached``
    when ``budget < 0`` (the level can no longer be met); else ``at_risk`` when
    ``budget < max(pace, margin)`` (the current pace would use up the budget,
    or less than the margin is left); else ``on_track``;
  - MTTR: ``breached`` when the MTTR so far exceeds the level (only further,
    faster repairs could bring it back: the agent does not count on more
    breakdowns); ``at_risk`` when the repair-time budget is below the margin;
  - response time: ``breached`` when more responses are late than the
    statistic allows; ``at_risk`` when the pending (unanswered, within the
    bound) breakdowns would breach it if they all ran late;
  - the other KPIs (no budget): ``breached`` when even the best case misses
    the level, ``at_risk`` when the forecast at pace misses it;

* **at the end** (``final`` True, ``R = 0``): ``met`` or ``missed`` on the
  value, and ``not_measurable`` for every term but data coverage when the
  period's coverage is below the contract's ``min_coverage`` (or nothing was
  planned). An undefined value is ``not_measurable``, except MTTR and
  response time, where no breakdown means the level is met.

A term's state is the worse of its levels. The margin is the contract's
``at_risk_margin_s``, by default the MTTR of the period so far (0 without
failures). Pure, no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from edge_agent.contracts.figures import (
    Figures,
    budget_ms,
    budget_shape,
    figures,
    mttr_budget_ms,
    pace_ms,
)
from edge_agent.contracts.model import Direction, Kpi, Level, Term
from edge_agent.contracts.response import Breakdown, count_against, nearest_rank, response_values
from edge_agent.contracts.sums import PeriodSums
from edge_agent.kpi.timeutil import format_instant

RATIO_DECIMALS = 6


class State(enum.Enum):
    """A level's or a term's state (the first three during a period, the rest at its end)."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    MET = "met"
    NOT_MEASURABLE = "not_measurable"
    MISSED = "missed"


_SEVERITY = {
    State.ON_TRACK: 0,
    State.AT_RISK: 1,
    State.BREACHED: 2,
    State.MET: 0,
    State.NOT_MEASURABLE: 1,
    State.MISSED: 2,
}


def worst_state(states: Sequence[State]) -> State:
    """The worse of several states (breached over at risk over on track; missed over met)."""
    return max(states, key=lambda s: _SEVERITY[s])


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelStatus:
    """One level of a term at an instant, in the term's units (seconds, not ms)."""

    level: str
    threshold: float
    state: State
    budget: float | None = None
    late: int | None = None
    pending: int | None = None
    next_deadline_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        out: dict[str, Any] = {
            "level": self.level,
            "threshold": self.threshold,
            "state": self.state.value,
            "budget": self.budget,
        }
        if self.late is not None:
            out["late"] = self.late
            out["pending"] = self.pending
            out["next_deadline"] = (
                None if self.next_deadline_ms is None else format_instant(self.next_deadline_ms)
            )
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class TermStatus:
    """One term at an instant: its figures, its levels and its (worst) state."""

    term: str
    kpi: Kpi
    state: State
    levels: tuple[LevelStatus, ...]
    so_far: float | None
    best: float | None
    worst: float | None
    forecast: float | None
    pace: float | None = None
    margin: float | None = None
    count: int | None = None
    statistic: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        out: dict[str, Any] = {
            "term": self.term,
            "kpi": self.kpi.value,
            "direction": self.kpi.direction.value,
            "unit": self.kpi.unit,
            "budget_unit": self.kpi.budget_unit,
            "state": self.state.value,
            "so_far": self.so_far,
            "best": self.best,
            "worst": self.worst,
            "forecast": self.forecast,
            "pace": self.pace,
            "margin": self.margin,
            "levels": [lv.as_dict() for lv in self.levels],
        }
        if self.kpi is Kpi.RESPONSE_TIME:
            out["statistic"] = self.statistic
            out["breakdowns"] = self.count
        return out


# -- units ---------------------------------------------------------------------------


def _is_time(kpi: Kpi) -> bool:
    return kpi.unit == "s"


def _internal(kpi: Kpi, level: Level) -> Fraction:
    """A level in internal units (ms for times)."""
    return level.exact * 1000 if _is_time(kpi) else level.exact


def _out(kpi: Kpi, value: Fraction | None) -> float | None:
    """An internal value in the term's unit, rounded to 6 decimals like the KPI records."""
    if value is None:
        return None
    return round(float(value / 1000 if _is_time(kpi) else value), RATIO_DECIMALS)


def _seconds(ms: Fraction | int | None) -> float | None:
    return None if ms is None else round(float(ms) / 1000, 3)


def _meets(kpi: Kpi, value: Fraction, level: Fraction) -> bool:
    return value >= level if kpi.direction is Direction.AT_LEAST else value <= level


# -- evaluation ---------------------------------------------------------------------


def margin_ms(s: PeriodSums, at_risk_margin_s: float | None) -> Fraction:
    """The at-risk margin: the contract's, or the MTTR of the period so far (0 without failures)."""
    if at_risk_margin_s is not None:
        return Fraction(repr(at_risk_margin_s)) * 1000
    return Fraction(s.ttr_ms, s.failures) if s.failures else Fraction(0)


def measurable(s: PeriodSums, min_coverage: float) -> bool:
    """Whether the period's data coverage reaches ``min_coverage`` (spec §3.10)."""
    return s.planned_ms > 0 and Fraction(s.known_ms, s.planned_ms) >= Fraction(repr(min_coverage))


def _final_state(kpi: Kpi, value: Fraction | None, level: Fraction, ok: bool) -> State:
    if not ok:
        return State.NOT_MEASURABLE
    if value is None:
        return State.MET if kpi in (Kpi.MTTR, Kpi.RESPONSE_TIME) else State.NOT_MEASURABLE
    return State.MET if _meets(kpi, value, level) else State.MISSED


def evaluate_term(
    term: Term,
    s: PeriodSums,
    *,
    final: bool,
    min_coverage: float,
    at_risk_margin_s: float | None,
    breakdowns: Sequence[Breakdown] = (),
    at_ms: int = 0,
) -> TermStatus:
    """The status of ``term`` from the period's sums (and breakdowns for response time)."""
    kpi = term.kpi
    ok = kpi is Kpi.DATA_COVERAGE or measurable(s, min_coverage)
    margin = margin_ms(s, at_risk_margin_s)
    if kpi is Kpi.RESPONSE_TIME:
        return _response_term(term, breakdowns, at_ms, final=final, ok=ok)
    fig = figures(kpi, s)
    shape = budget_shape(kpi, s)
    pace = pace_ms(shape, s.remaining_ms) if shape is not None else None
    levels: list[LevelStatus] = []
    for level in term.levels:
        a = _internal(kpi, level)
        budget: Fraction | None = None
        if shape is not None:
            budget = budget_ms(shape, a, s.remaining_ms)
        elif kpi is Kpi.MTTR:
            budget = mttr_budget_ms(s, a)
        if final:
            state = _final_state(kpi, fig.so_far, a, ok)
        else:
            state = _live_state(kpi, fig, a, budget, pace, margin)
        levels.append(
            LevelStatus(
                level=level.name, threshold=level.value, state=state, budget=_seconds(budget)
            )
        )
    uses_margin = shape is not None or kpi is Kpi.MTTR
    return TermStatus(
        term=term.name,
        kpi=kpi,
        state=worst_state([lv.state for lv in levels]),
        levels=tuple(levels),
        so_far=_out(kpi, fig.so_far),
        best=_out(kpi, fig.best),
        worst=_out(kpi, fig.worst),
        forecast=_out(kpi, fig.forecast),
        pace=_seconds(pace),
        margin=_seconds(margin) if uses_margin else None,
    )


def _live_state(
    kpi: Kpi,
    fig: Figures,
    level: Fraction,
    budget: Fraction | None,
    pace: Fraction | None,
    margin: Fraction,
) -> State:
    if pace is not None and budget is not None:  # budget KPIs: spec §3.13 verbatim
        if budget < 0:
            return State.BREACHED
        return State.AT_RISK if budget < max(pace, margin) else State.ON_TRACK
    if kpi is Kpi.MTTR:
        if fig.so_far is not None and not _meets(kpi, fig.so_far, level):
            return State.BREACHED
        return State.AT_RISK if budget is not None and budget < margin else State.ON_TRACK
    if fig.best is not None and not _meets(kpi, fig.best, level):
        return State.BREACHED
    if fig.forecast is not None and not _meets(kpi, fig.forecast, level):
        return State.AT_RISK
    return State.ON_TRACK


def _response_term(
    term: Term, breakdowns: Sequence[Breakdown], at_ms: int, *, final: bool, ok: bool
) -> TermStatus:
    kpi = term.kpi
    to = term.response_to
    percentile = term.percentile
    if to is None or percentile is None:
        raise ValueError(f"term {term.name!r}: response time needs a statistic and 'to'")
    values = response_values(breakdowns, to, at_ms)
    stat = nearest_rank(values, percentile)
    so_far = None if stat is None else Fraction(stat)
    levels: list[LevelStatus] = []
    for level in term.levels:
        bound = _internal(kpi, level)
        counted = count_against(breakdowns, to, int(bound), percentile, at_ms)
        if final:
            state = (
                State.NOT_MEASURABLE
                if not ok
                else State.MET
                if counted.budget >= 0
                else State.MISSED
            )
        elif counted.budget < 0:
            state = State.BREACHED
        elif counted.budget < counted.pending:
            state = State.AT_RISK
        else:
            state = State.ON_TRACK
        levels.append(
            LevelStatus(
                level=level.name,
                threshold=level.value,
                state=state,
                budget=float(counted.budget),
                late=counted.late,
                pending=counted.pending,
                next_deadline_ms=counted.next_deadline_ms,
            )
        )
    figure = _out(kpi, so_far)
    return TermStatus(
        term=term.name,
        kpi=kpi,
        state=worst_state([lv.state for lv in levels]),
        levels=tuple(levels),
        so_far=figure,
        best=figure,
        worst=None,
        forecast=figure,
        count=len(values),
        statistic=term.statistic,
    )
