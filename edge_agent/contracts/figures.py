"""So far, best, worst, forecast and budget of a KPI over a contract period (spec §3.13).

Every figure is a ratio of the period's sums (:class:`~edge_agent.contracts.sums.PeriodSums`)
with the formulas and null rules of spec §3.8 to §3.10, extended to the end of
the period with ``R`` (planned service time after ``t``) under a stated case:

* **best**: every remaining second is measured, up, running at the ideal rate
  and making good parts; future customer downtime is 0;
* **worst**: every remaining second is measured and down (provider-attributed
  for SLA availability, unknown for data coverage); None where the KPI has no
  bound that way (MTTR, cycle time, response time);
* **forecast**: the period so far continued at its pace. Each of these KPIs is
  a ratio whose numerator and denominator both grow with time, so at pace the
  value stays the same: for SLA availability ``K' = K + R``, ``C' = C(1 + R/K)``,
  ``Bp' = Bp(1 + R/K)`` gives exactly ``so_far``. It is None until ``K > 0``.

Budget KPIs (SLA availability, availability, data coverage) share one shape,
``value = (base - bad) / base``; their budget for a level ``a`` is
``(1 - a)·(base + R) - bad``, for SLA availability exactly spec §3.13's
``(1 - a*)(K + R - C) - Bp``. MTTR's budget is the repair time still allowed
with the failures so far, ``level·failures - ttr_sum``.

Values are exact fractions; times in milliseconds. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from edge_agent.contracts.model import Kpi
from edge_agent.contracts.sums import PeriodSums

MS_PER_H = 3_600_000

Value = Fraction | None


@dataclass(frozen=True, slots=True)
class Figures:
    """The four figures of one KPI (internal units: ratios, ms, parts/h)."""

    so_far: Value
    best: Value
    worst: Value
    forecast: Value


@dataclass(frozen=True, slots=True)
class BudgetShape:
    """``value = (base - bad) / base``; the pace of ``bad`` is measured against ``pace_base``."""

    base: int
    bad: int
    pace_base: int


def _div(num: Fraction | int, den: Fraction | int) -> Value:
    return Fraction(num) / den if den > 0 else None


def budget_shape(kpi: Kpi, s: PeriodSums) -> BudgetShape | None:
    """The budget form of ``kpi`` (None for KPIs without a time budget)."""
    known = s.known_ms
    if kpi is Kpi.SLA_AVAILABILITY:
        return BudgetShape(known - s.customer_ms, s.provider_ms, known)
    if kpi is Kpi.AVAILABILITY:
        return BudgetShape(known, known - s.operating_ms, known)
    if kpi is Kpi.DATA_COVERAGE:
        return BudgetShape(s.planned_ms, s.unknown_ms, s.planned_ms)
    return None


def budget_ms(shape: BudgetShape, level: Fraction, remaining_ms: int) -> Fraction:
    """Bad time still allowed before ``level`` can no longer be met (negative: breached)."""
    return (1 - level) * (shape.base + remaining_ms) - shape.bad


def pace_ms(shape: BudgetShape, remaining_ms: int) -> Fraction:
    """Bad time the rest of the period brings at the pace so far (``Bp·R/K`` for SLA)."""
    if shape.pace_base <= 0:
        return Fraction(0)
    return Fraction(shape.bad * remaining_ms, shape.pace_base)


def mttr_budget_ms(s: PeriodSums, level_ms: Fraction) -> Fraction | None:
    """Repair time still allowed with the failures so far (None without failures)."""
    if s.failures == 0:
        return None
    return level_ms * s.failures - s.ttr_ms


def _oee(
    known: Fraction, operating: Fraction, ideal: Fraction, good: Fraction, total: Fraction
) -> Value:
    """Spec §3.8 OEE with its zero rules, on sums (ideal = Σ ICT·attributed parts)."""
    if known <= 0:
        return None
    if operating <= 0 or total <= 0:
        return Fraction(0)
    return (operating / known) * min(ideal / operating, Fraction(1)) * (good / total)


def figures(kpi: Kpi, s: PeriodSums) -> Figures:
    """So far, best, worst and forecast of ``kpi`` (not response time: see ``response``)."""
    r = s.remaining_ms
    rp = s.remaining_parts
    known = s.known_ms
    shape = budget_shape(kpi, s)
    if shape is not None:
        so_far = _div(shape.base - shape.bad, shape.base)
        return Figures(
            so_far=so_far,
            best=_div(shape.base - shape.bad + r, shape.base + r),
            worst=_div(shape.base - shape.bad, shape.base + r),
            forecast=so_far if shape.pace_base > 0 else None,
        )
    o, ideal, att = s.operating_ms, s.ideal_ms, s.attributed
    if kpi is Kpi.OEE:
        so_far = _oee(Fraction(known), Fraction(o), ideal, Fraction(s.good), Fraction(s.total))
        best = _oee(Fraction(known + r), Fraction(o + r), ideal + r, s.good + rp, s.total + rp)
        worst = _oee(Fraction(known + r), Fraction(o), ideal, Fraction(s.good), Fraction(s.total))
    elif kpi is Kpi.PERFORMANCE:
        so_far = _div(ideal, o) if known > 0 else None
        best = _div(ideal + r, o + r) if known + r > 0 else None
        worst = _div(ideal, o + r) if known + r > 0 else None
    elif kpi is Kpi.QUALITY:
        so_far = _div(s.good, s.total) if known > 0 else None
        best = _div(s.good + rp, s.total + rp) if known + r > 0 else None
        worst = _div(s.good, s.total + rp) if known + r > 0 else None
    elif kpi is Kpi.THROUGHPUT:
        so_far = _div(MS_PER_H * s.total, known)
        best = _div(MS_PER_H * (s.total + rp), known + r)
        worst = _div(MS_PER_H * s.total, known + r)
    elif kpi is Kpi.CYCLE_TIME:
        so_far = _div(o, att) if o > 0 else None
        best = _div(o + r, att + rp) if o + r > 0 else None
        worst = None
    elif kpi is Kpi.MTTR:
        so_far = _div(s.ttr_ms, s.failures)
        best, worst = so_far, None
    else:
        raise ValueError(f"{kpi.value}: no period figures (response time has its own)")
    return Figures(so_far=so_far, best=best, worst=worst, forecast=so_far if known > 0 else None)
