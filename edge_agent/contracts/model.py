"""What a contract says: machines, service calendar, period, terms and their levels.

A :class:`Contract` is the validated, immutable form of one ``[contracts.NAME]``
table (see :mod:`edge_agent.contracts.parse`). It names machines and refers to
their KPI profiles for everything the KPI specification defines (micro-stop
threshold, hold bound, customer fault codes, planned maintenance): a contract
never redefines a KPI, it only states which KPI, over which service hours and
period, must reach which level. :func:`contract_hash` fingerprints the
normalised definition, so every status and period record carries evidence of
the terms it was judged by (like ``profile_hash`` for KPI records).

Pure values: no I/O, no clock.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from edge_agent.kpi.profile import SPEC_VERSION, Shift, UtcInterval, Weekday
from edge_agent.kpi.timeutil import format_instant

CONTRACT_FORMAT = "contract/1"
"""Version of the contract definition format (part of the hash)."""


class Direction(enum.Enum):
    """Which way a KPI must go: at least the level, or at most."""

    AT_LEAST = ">="
    AT_MOST = "<="


class Kpi(enum.Enum):
    """The KPIs a term can hold to a level; values are the KPI record's field names."""

    SLA_AVAILABILITY = "sla_availability"
    AVAILABILITY = "availability"
    OEE = "oee"
    PERFORMANCE = "performance"
    QUALITY = "quality"
    MTTR = "mttr_s"
    RESPONSE_TIME = "response_time_s"
    THROUGHPUT = "throughput_per_h"
    CYCLE_TIME = "actual_cycle_time_s"
    DATA_COVERAGE = "data_coverage"

    @property
    def direction(self) -> Direction:
        """The KPI's direction (fixed by the KPI: availability is never "at most")."""
        if self in (Kpi.MTTR, Kpi.RESPONSE_TIME, Kpi.CYCLE_TIME):
            return Direction.AT_MOST
        return Direction.AT_LEAST

    @property
    def unit(self) -> str:
        """Unit of the KPI's value and of its levels."""
        if self in (Kpi.MTTR, Kpi.RESPONSE_TIME, Kpi.CYCLE_TIME):
            return "s"
        if self is Kpi.THROUGHPUT:
            return "parts/h"
        return "ratio"

    @property
    def budget_unit(self) -> str | None:
        """Unit of the remaining budget, or None when the KPI has no budget (spec §3.13)."""
        if self in (Kpi.SLA_AVAILABILITY, Kpi.AVAILABILITY, Kpi.DATA_COVERAGE, Kpi.MTTR):
            return "s"
        if self is Kpi.RESPONSE_TIME:
            return "responses"
        return None


class ResponseTo(enum.Enum):
    """Which instant ends a response: the acknowledgement or the arrival on site."""

    ACKNOWLEDGED = "acknowledged"
    ARRIVED = "arrived"


class CalendarKind(enum.Enum):
    """Where the contract's service hours come from."""

    MACHINE = "machine"
    ALWAYS = "24/7"
    SHIFTS = "shifts"


class PeriodKind(enum.Enum):
    """How the contract's time is cut into settlement periods."""

    MONTH = "month"
    QUARTER = "quarter"
    ROLLING_30D = "rolling_30d"
    DATES = "dates"


@dataclass(frozen=True, slots=True, kw_only=True)
class Level:
    """One level of a term: its name (``target`` or ``minimum``) and threshold."""

    name: str
    value: float

    @property
    def exact(self) -> Fraction:
        """The threshold as an exact fraction of its decimal text (0.98 is 49/50)."""
        return Fraction(repr(self.value))


@dataclass(frozen=True, slots=True, kw_only=True)
class Term:
    """A KPI held to a target and, optionally, a looser minimum.

    ``percentile`` (100 = max) and ``response_to`` are set only for
    ``response_time_s``.
    """

    name: str
    kpi: Kpi
    target: float
    minimum: float | None = None
    percentile: int | None = None
    response_to: ResponseTo | None = None

    @property
    def levels(self) -> tuple[Level, ...]:
        """Target first, then the minimum when there is one."""
        out = [Level(name="target", value=self.target)]
        if self.minimum is not None:
            out.append(Level(name="minimum", value=self.minimum))
        return tuple(out)

    @property
    def statistic(self) -> str | None:
        """``max`` or ``pNN`` for a response-time term."""
        if self.percentile is None:
            return None
        return "max" if self.percentile == 100 else f"p{self.percentile}"

    def as_json(self) -> dict[str, Any]:
        """Canonical JSON form."""
        out: dict[str, Any] = {
            "kpi": self.kpi.value,
            "direction": self.kpi.direction.value,
            "unit": self.kpi.unit,
            "target": self.target,
            "minimum": self.minimum,
        }
        if self.kpi is Kpi.RESPONSE_TIME:
            out["statistic"] = self.statistic
            out["to"] = self.response_to.value if self.response_to else None
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceCalendar:
    """Service hours: the machines' own planned time, 24/7, or the contract's shifts.

    ``exclusions`` (announced maintenance under the contract, UTC) are removed
    in addition to each machine's own KPI-profile exclusions.
    """

    kind: CalendarKind
    shifts: tuple[Shift, ...] = ()
    exclusions: tuple[UtcInterval, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Canonical JSON form."""
        return {
            "kind": self.kind.value,
            "shifts": [
                {
                    "name": s.name,
                    "start": f"{s.start_min // 60:02d}:{s.start_min % 60:02d}",
                    "end": f"{s.end_min // 60:02d}:{s.end_min % 60:02d}",
                    "days": [d.value for d in Weekday if d.index in s.days],
                }
                for s in self.shifts
            ],
            "exclusions": [
                {
                    "start": format_instant(w.start_ms),
                    "end": format_instant(w.end_ms),
                    "reason": w.reason,
                }
                for w in self.exclusions
            ],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Contract:
    """One outcome contract.

    Attributes:
        name: the contract's name (``[contracts.NAME]``); not part of the hash.
        machines: machine names, summed (spec §3.11: sums of components).
        timezone: IANA zone of period boundaries and of contract shifts.
        calendar: service hours.
        period: how periods are cut; ``start_ms``/``end_ms`` for ``dates``.
        min_coverage: below this data coverage a closed period is not measurable.
        at_risk_margin_s: the at-risk margin in seconds; None = the period's MTTR so far.
        terms: the terms, in file order.
        window_name: the name of its KPI window when it must keep an older one (the
            ``[reporting] contract_start/end`` sugar); not part of the definition.
    """

    name: str
    machines: tuple[str, ...]
    timezone: str
    calendar: ServiceCalendar
    period: PeriodKind = PeriodKind.MONTH
    start_ms: int | None = None
    end_ms: int | None = None
    min_coverage: float = 0.95
    at_risk_margin_s: float | None = None
    terms: tuple[Term, ...] = ()
    window_name: str | None = None

    def term(self, name: str) -> Term:
        """The term called ``name``.

        Raises:
            KeyError: when there is no such term.
        """
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(name)

    def describe(self) -> str:
        """One line for ``check-config``: machines, service hours, period and terms."""
        terms = "; ".join(
            f"{t.name} {t.kpi.value}{f' {t.statistic}' if t.statistic else ''}"
            f" {t.kpi.direction.value} {t.target:g}"
            + (f" (minimum {t.minimum:g})" if t.minimum is not None else "")
            for t in self.terms
        )
        return (
            f"contract {self.name}: {', '.join(self.machines)}; {self.period.value} periods"
            f" ({self.timezone}), service hours {self.calendar.kind.value};"
            f" terms: {terms or 'none (period records only)'}; hash {contract_hash(self)[:12]}"
        )

    def as_json(self) -> dict[str, Any]:
        """Canonical JSON form of the definition (machines sorted, terms by name)."""
        return {
            "machines": sorted(self.machines),
            "timezone": self.timezone,
            "calendar": self.calendar.as_json(),
            "period": {
                "kind": self.period.value,
                "start": None if self.start_ms is None else format_instant(self.start_ms),
                "end": None if self.end_ms is None else format_instant(self.end_ms),
            },
            "min_coverage": self.min_coverage,
            "at_risk_margin_s": "mttr" if self.at_risk_margin_s is None else self.at_risk_margin_s,
            "terms": {t.name: t.as_json() for t in sorted(self.terms, key=lambda t: t.name)},
        }


def contract_document(contract: Contract) -> dict[str, Any]:
    """What :func:`contract_hash` hashes: the definition with the format and spec versions.

    The contract's name is left out: two parties may file the same terms under
    different names and must still get the same hash.
    """
    return {
        "format": CONTRACT_FORMAT,
        "spec_version": SPEC_VERSION,
        "contract": contract.as_json(),
    }


def document_hash(doc: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a contract document's canonical JSON (sorted keys, ASCII, compact).

    A verifier recomputes it from an evidence bundle's ``contracts/<hash>.json``.
    """
    import hashlib  # here: loading a configuration need not map OpenSSL (3.5 MB RSS)

    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@functools.lru_cache(maxsize=64)
def contract_hash(contract: Contract) -> str:
    """SHA-256 (hex) of :func:`contract_document` (see :func:`document_hash`)."""
    return document_hash(contract_document(contract))
