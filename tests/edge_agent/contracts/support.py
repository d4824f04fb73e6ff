"""Helpers for the contract tests: hand-written components and contracts."""

from __future__ import annotations

from typing import Any

from edge_agent.contracts import (
    CalendarKind,
    Contract,
    Kpi,
    MachineInput,
    PeriodKind,
    ResponseTo,
    ServiceCalendar,
    Term,
)
from edge_agent.kpi.record import COUNT_FIELDS, TIME_FIELDS

H = 3600.0
DAY = 86400.0


def components(**values: Any) -> dict[str, Any]:
    """A §3.11 component dict: zero everywhere except ``values`` (seconds and counts)."""
    out: dict[str, Any] = dict.fromkeys(TIME_FIELDS, 0.0) | dict.fromkeys(COUNT_FIELDS, 0)
    out["flags"] = []
    unknown = set(values) - set(out)
    if unknown:
        raise KeyError(unknown)
    out.update(values)
    return out


def machine(
    comp: dict[str, Any], *, remaining_s: float, name: str = "m1", ict: float = 2.0
) -> MachineInput:
    """One machine's input."""
    return MachineInput(
        machine=name,
        components=comp,
        ideal_cycle_time_s=ict,
        remaining_s=remaining_s,
        profile_hash=f"hash-of-{name}",
    )


def term(kpi: Kpi, target: float, minimum: float | None = None, **extra: Any) -> Term:
    """A term named after its KPI."""
    return Term(name=kpi.value, kpi=kpi, target=target, minimum=minimum, **extra)


def response_term(statistic: int, target_s: float, minimum_s: float | None = None) -> Term:
    """A response-time term to acknowledgement (statistic: percentile, 100 = max)."""
    return term(
        Kpi.RESPONSE_TIME,
        target_s,
        minimum_s,
        percentile=statistic,
        response_to=ResponseTo.ACKNOWLEDGED,
    )


def contract(
    *terms: Term,
    machines: tuple[str, ...] = ("m1",),
    timezone: str = "UTC",
    calendar: ServiceCalendar | None = None,
    period: PeriodKind = PeriodKind.MONTH,
    **extra: Any,
) -> Contract:
    """A contract over ``machines`` (24/7 unless stated) with ``terms``."""
    return Contract(
        name="c",
        machines=machines,
        timezone=timezone,
        calendar=calendar or ServiceCalendar(kind=CalendarKind.ALWAYS),
        period=period,
        terms=terms,
        **extra,
    )
