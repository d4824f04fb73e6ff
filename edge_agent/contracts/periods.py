"""Settlement periods of a contract: which period holds an instant, and the next one.

Periods are half-open ``[start, end)`` UTC intervals cut at local midnights of
the contract's zone (PEP 495 ``fold=0``, like every local time in the agent),
so a Europe/Paris month of March lasts 743 h and one of October 745 h:

* ``month``: the local calendar month (the default, spec §3.13);
* ``quarter``: local calendar quarters starting January, April, July, October;
* ``rolling_30d``: the 30 local days ending with the local day that holds the
  instant. A period therefore closes at every local midnight, and consecutive
  periods overlap by 29 days; the live status at ``t`` is the period ending
  tonight, with the rest of today as its remaining time;
* ``dates``: the one explicit period ``[start, end)``; no period outside it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from edge_agent.contracts.model import Contract, PeriodKind
from edge_agent.kpi.calendar import local_ms
from edge_agent.kpi.timeutil import format_instant, ms_to_datetime

ROLLING_DAYS = 30


@dataclass(frozen=True, slots=True)
class Period:
    """One settlement period: a stable name and its UTC bounds in epoch milliseconds."""

    name: str
    start_ms: int
    end_ms: int

    def holds(self, t_ms: int) -> bool:
        """Whether ``t_ms`` lies in ``[start, end)``."""
        return self.start_ms <= t_ms < self.end_ms


def _midnight(zone: ZoneInfo, day: dt.date) -> int:
    return local_ms(zone, day, 0)


def _months_later(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def period_at(contract: Contract, t_ms: int) -> Period | None:
    """The period of ``contract`` that holds ``t_ms`` (None outside a ``dates`` period)."""
    zone = ZoneInfo(contract.timezone)
    if contract.period is PeriodKind.DATES:
        if contract.start_ms is None or contract.end_ms is None:
            return None
        period = Period(
            f"dates:{format_instant(contract.start_ms)}/{format_instant(contract.end_ms)}",
            contract.start_ms,
            contract.end_ms,
        )
        return period if period.holds(t_ms) else None
    day = ms_to_datetime(t_ms).astimezone(zone).date()
    if contract.period is PeriodKind.ROLLING_30D:
        first = day - dt.timedelta(days=ROLLING_DAYS - 1)
        return Period(
            f"rolling_30d:{day.isoformat()}",
            _midnight(zone, first),
            _midnight(zone, day + dt.timedelta(days=1)),
        )
    if contract.period is PeriodKind.QUARTER:
        quarter = (day.month - 1) // 3
        first = dt.date(day.year, 3 * quarter + 1, 1)
        return Period(
            f"quarter:{day.year:04d}-Q{quarter + 1}",
            _midnight(zone, first),
            _midnight(zone, _months_later(first, 3)),
        )
    first = dt.date(day.year, day.month, 1)
    return Period(
        f"month:{day.year:04d}-{day.month:02d}",
        _midnight(zone, first),
        _midnight(zone, _months_later(first, 1)),
    )


def next_period(contract: Contract, period: Period) -> Period | None:
    """The period that closes next after ``period`` (None after a ``dates`` period)."""
    return period_at(contract, period.end_ms)
