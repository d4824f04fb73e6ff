"""Reading ``[contracts.NAME]`` tables into :class:`~edge_agent.contracts.model.Contract`.

Validation follows the rest of the configuration: every problem is recorded
through :class:`~edge_agent.configkit.Table` with the file, the dotted key
path and what was expected, unknown keys are errors, and the contract is
cross-checked against the machines of the same file (an unknown machine, or
``calendar = "machine"`` on a machine whose KPI profile plans no time, is an
error). Shifts and exclusions are read by the KPI profile's own readers, so a
contract calendar accepts exactly what a machine calendar accepts.

:func:`reporting_contract` is the old ``[reporting] contract_start/contract_end``
form expressed as a contract (see ``docs/contracts.md``). No I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from edge_agent.configkit import Table, describe
from edge_agent.contracts.model import (
    CalendarKind,
    Contract,
    Direction,
    Kpi,
    PeriodKind,
    ResponseTo,
    ServiceCalendar,
    Term,
)
from edge_agent.kpi.profile import KpiProfile, parse_intervals, parse_shifts
from edge_agent.kpi.timeutil import datetime_to_ms, parse_instant

REPORTING_CONTRACT = "reporting"
"""Name of the contract built from ``[reporting] contract_start/contract_end``."""

_TERM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_PERCENTILE = re.compile(r"^p([1-9][0-9]?)$")
_RESPONSE_ONLY = ("statistic", "to")


def _known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _zone(table: Table) -> str:
    """The contract's zone (required: period boundaries depend on it); "UTC" if invalid."""
    expected = "an IANA time zone such as 'Europe/Paris'"

    def check(name: str) -> str | None:
        return None if _known_zone(name) else f"expected {expected}, got {name!r}"

    name = table.get_str("timezone", check=check, expected=expected)
    return name if name and _known_zone(name) else "UTC"


def _period_bound(table: Table, key: str, zone: str) -> int | None:
    """A period bound: a local date (midnight in the contract zone) or an offset instant."""
    expected = "a local date such as 2026-01-01 or an offset date-time such as 2026-01-01T00:00:00Z"
    raw = table.get_raw(key)
    if raw is None:
        table.error(key, f'missing, expected {expected} (period = "dates")')
        return None
    tz = ZoneInfo(zone)
    try:
        if isinstance(raw, dt.datetime):
            if raw.tzinfo is not None:
                return datetime_to_ms(raw)
        elif isinstance(raw, dt.date):
            return datetime_to_ms(dt.datetime(raw.year, raw.month, raw.day), tz)
        elif isinstance(raw, str):
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
                day = dt.date.fromisoformat(raw.strip())
                return datetime_to_ms(dt.datetime(day.year, day.month, day.day), tz)
            return parse_instant(raw)
    except ValueError:
        pass
    table.error(key, f"expected {expected}, got {describe(raw)}")
    return None


def _level(table: Table, key: str, kpi: Kpi, *, required: bool) -> float | None:
    if not required and not table.has(key):
        table.get_raw(key)
        return None
    if kpi.unit == "ratio" and kpi is not Kpi.PERFORMANCE:
        return table.get_float(key, min=0.0, max=1.0)
    return table.get_float(key, positive=True)


def _percentile(table: Table) -> int | None:
    expected = "'max' or a nearest-rank percentile 'p1'..'p99' such as 'p90'"
    text = table.get_str("statistic", expected=expected)
    if not text:
        return None
    if text == "max":
        return 100
    match = _PERCENTILE.match(text)
    if match is None:
        table.error("statistic", f"expected {expected}, got {describe(text)}")
        return None
    return int(match.group(1))


def parse_term(name: str, table: Table) -> Term | None:
    """One ``[contracts.NAME.terms.TERM]`` table; None when its KPI is invalid."""
    if not _TERM_NAME.match(name):
        table.issues.add(table.path, f"term name {name!r}: use letters, digits, '_' or '-'")
    kpi = table.get_enum("kpi", Kpi)
    if table.data.get("kpi") != kpi.value:
        return None  # the kpi error is recorded; other keys cannot be judged without it
    target = _level(table, "target", kpi, required=True)
    minimum = _level(table, "minimum", kpi, required=False)
    percentile: int | None = None
    response_to: ResponseTo | None = None
    if kpi is Kpi.RESPONSE_TIME:
        percentile = _percentile(table)
        response_to = table.get_enum("to", ResponseTo)
    else:
        for key in _RESPONSE_ONLY:
            if table.has(key):
                table.get_raw(key)
                table.error(key, 'only for kpi = "response_time_s"')
    table.finish()
    if target is not None and minimum is not None:
        if kpi.direction is Direction.AT_LEAST and minimum > target:
            table.error(
                "minimum", f"expected at most the target {target} ({kpi.value} is 'at least')"
            )
        if kpi.direction is Direction.AT_MOST and minimum < target:
            table.error(
                "minimum", f"expected at least the target {target} ({kpi.value} is 'at most')"
            )
    return Term(
        name=name,
        kpi=kpi,
        target=target or 0.0,
        minimum=minimum,
        percentile=percentile,
        response_to=response_to,
    )


def _plans_time(profile: KpiProfile) -> bool:
    return bool(profile.always_planned or profile.shifts or profile.planned_windows)


def _margin(table: Table) -> float | None:
    expected = "'mttr' (the period's MTTR so far) or a number of seconds >= 0"
    if not table.has("at_risk_margin_s"):
        table.get_raw("at_risk_margin_s")
        return None
    raw = table.data["at_risk_margin_s"]
    if raw == "mttr":
        table.get_raw("at_risk_margin_s")
        return None
    if isinstance(raw, str):
        table.get_raw("at_risk_margin_s")
        table.error("at_risk_margin_s", f"expected {expected}, got {describe(raw)}")
        return None
    return table.get_float("at_risk_margin_s", min=0.0)


def parse_contract(name: str, table: Table, profiles: Mapping[str, KpiProfile]) -> Contract:
    """One ``[contracts.NAME]`` table, cross-checked against the machines' KPI profiles.

    Problems are recorded in ``table.issues``; the caller raises. When problems
    were recorded the returned contract holds placeholders and must not be used.
    """
    machines = table.get_list(
        "machines",
        lambda v: v if isinstance(v, str) and v else None,
        expected="machine names",
    )
    if table.has("machines") and not machines and isinstance(table.data["machines"], list):
        table.error("machines", "expected at least one machine")
    for machine in machines:
        if machine not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            table.error("machines", f"no machine {machine!r} (machines: {known})")
    for machine in {m for m in machines if machines.count(m) > 1}:
        table.error("machines", f"machine {machine!r} listed twice")
    zone = _zone(table)
    kind = table.get_enum("calendar", CalendarKind)
    shifts = parse_shifts(table)
    if kind is CalendarKind.SHIFTS and not shifts and table.has("calendar"):
        table.error("shifts", 'missing, expected [[contracts.NAME.shifts]] (calendar = "shifts")')
    if kind is not CalendarKind.SHIFTS and shifts:
        table.error("shifts", 'only with calendar = "shifts"')
    if kind is CalendarKind.MACHINE:
        for machine in machines:
            profile = profiles.get(machine)
            if profile is not None and not _plans_time(profile):
                table.error(
                    "calendar",
                    f'"machine" but the KPI profile of {machine!r} plans nothing '
                    '(planned_windows = [], no shifts: no service time); use "24/7" or "shifts"',
                )
    exclusions = parse_intervals(table, "exclusions", with_reason=True)
    period = table.get_enum("period", PeriodKind, PeriodKind.MONTH)
    start = end = None
    if period is PeriodKind.DATES:
        start = _period_bound(table, "start", zone)
        end = _period_bound(table, "end", zone)
        if start is not None and end is not None and end <= start:
            table.error("end", "expected a bound after start (end is the first instant after)")
    else:
        for key in ("start", "end"):
            if table.has(key):
                table.get_raw(key)
                table.error(key, 'only with period = "dates"')
    min_coverage = table.get_float("min_coverage", 0.95, min=0.0, max=1.0)
    margin = _margin(table)
    terms: list[Term] = []
    for term_name, term_table in table.tables("terms"):
        term = parse_term(term_name, term_table)
        if term is not None:
            terms.append(term)
    if not table.has("terms"):
        table.error("terms", "missing, expected at least one [contracts.NAME.terms.TERM] table")
    elif isinstance(table.data["terms"], dict) and not table.data["terms"]:
        table.error("terms", "expected at least one term")
    table.finish()
    return Contract(
        name=name,
        machines=tuple(dict.fromkeys(machines)),
        timezone=zone,
        calendar=ServiceCalendar(kind=kind, shifts=shifts, exclusions=exclusions),
        period=period,
        start_ms=start,
        end_ms=end,
        min_coverage=min_coverage,
        at_risk_margin_s=margin,
        terms=tuple(terms),
    )


def reporting_contract(start: dt.datetime, end: dt.datetime, machines: list[str]) -> Contract:
    """The old ``[reporting] contract_start/contract_end`` as a contract without terms.

    Every machine, each on its own planned time (``calendar = "machine"``), one
    explicit period ``[contract_start, contract_end)``: what the old explicit
    "contract" report window measured, now reported by the contract machinery.
    """
    return Contract(
        name=REPORTING_CONTRACT,
        machines=tuple(machines),
        timezone="UTC",
        calendar=ServiceCalendar(kind=CalendarKind.MACHINE),
        period=PeriodKind.DATES,
        start_ms=datetime_to_ms(start),
        end_ms=datetime_to_ms(end),
        # The KPI window keeps the name it always had, so consumers see no change.
        window_name=f"contract:{start.isoformat()}/{end.isoformat()}",
    )
