"""The period's sums of KPI components over every machine of a contract (spec §3.11).

A contract is never judged on averaged ratios: each machine contributes the
*components* of its KPI records for ``[period start, t)`` (times, counts,
failures, TTR sum, customer and provider breakdown time), and
:func:`sum_inputs` adds them over machines into :class:`PeriodSums`, in
integer milliseconds and exact fractions so that a level such as 98 % is
compared without float noise. Two quantities need each machine's ideal cycle
time and cannot be summed as counts: the ideal time of the parts made
(``Σ ICT·parts``, the performance numerator) and the parts the remaining
service time could make at the ideal rate (``Σ R/ICT``, used by best cases).
Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any


def _ms(seconds: Any) -> int:
    return round(float(seconds) * 1000)


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineInput:
    """One machine's share of a contract at an instant.

    Attributes:
        machine: the machine's name.
        components: its summed §3.11 components for ``[period start, t)`` on the
            contract's service hours (a ``KpiRecord.components()`` or the
            ``sum_components`` of several windows).
        ideal_cycle_time_s: from its KPI profile.
        remaining_s: its planned service seconds after ``t`` (``R`` of §3.13).
        profile_hash: hash of the KPI profile the components were computed with.
    """

    machine: str
    components: Mapping[str, Any]
    ideal_cycle_time_s: float
    remaining_s: float
    profile_hash: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodSums:
    """Summed components of a contract period so far (milliseconds, counts)."""

    planned_ms: int = 0
    unknown_ms: int = 0
    running_ms: int = 0
    micro_ms: int = 0
    breakdown_ms: int = 0
    other_ms: int = 0
    customer_ms: int = 0
    provider_ms: int = 0
    ttr_ms: int = 0
    failures: int = 0
    total: int = 0
    good: int = 0
    unattributed: int = 0
    ideal_ms: Fraction = Fraction(0)
    remaining_ms: int = 0
    remaining_parts: Fraction = Fraction(0)
    flags: frozenset[str] = frozenset()

    @property
    def known_ms(self) -> int:
        """K = P - U: measured planned service time."""
        return self.planned_ms - self.unknown_ms

    @property
    def operating_ms(self) -> int:
        """O = running + micro-stops."""
        return self.running_ms + self.micro_ms

    @property
    def downtime_ms(self) -> int:
        """D = breakdown + other downtime."""
        return self.breakdown_ms + self.other_ms

    @property
    def attributed(self) -> int:
        """Parts whose production time is known (total - unattributed)."""
        return self.total - self.unattributed


def sum_inputs(inputs: Iterable[MachineInput]) -> PeriodSums:
    """Add the components of every machine (ratios are formed later, from these sums)."""
    acc: dict[str, int] = dict.fromkeys(
        (
            "planned_ms",
            "unknown_ms",
            "running_ms",
            "micro_ms",
            "breakdown_ms",
            "other_ms",
            "customer_ms",
            "provider_ms",
            "ttr_ms",
            "failures",
            "total",
            "good",
            "unattributed",
            "remaining_ms",
        ),
        0,
    )
    ideal = Fraction(0)
    parts = Fraction(0)
    flags: set[str] = set()
    for item in inputs:
        c = item.components
        acc["planned_ms"] += _ms(c["planned_time_s"])
        acc["unknown_ms"] += _ms(c["unknown_time_s"])
        acc["running_ms"] += _ms(c["running_time_s"])
        acc["micro_ms"] += _ms(c["micro_stop_time_s"])
        acc["breakdown_ms"] += _ms(c["downtime_breakdown_s"])
        acc["other_ms"] += _ms(c["downtime_other_s"])
        acc["customer_ms"] += _ms(c["downtime_customer_s"])
        acc["provider_ms"] += _ms(c["downtime_provider_s"])
        acc["ttr_ms"] += _ms(c["ttr_sum_s"])
        acc["failures"] += int(c["failures"])
        acc["total"] += int(c["total_count"])
        acc["good"] += int(c["good_count"])
        acc["unattributed"] += int(c["unattributed_total_count"])
        remaining = _ms(item.remaining_s)
        acc["remaining_ms"] += remaining
        ict_ms = Fraction(repr(float(item.ideal_cycle_time_s))) * 1000
        ideal += ict_ms * (int(c["total_count"]) - int(c["unattributed_total_count"]))
        parts += remaining / ict_ms
        flags.update(c.get("flags", ()))
    return PeriodSums(**acc, ideal_ms=ideal, remaining_parts=parts, flags=frozenset(flags))
