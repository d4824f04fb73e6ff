"""A contract's status at an instant: every term over the current (or a closed) period.

:func:`evaluate_contract` is the whole of §3.13 for one contract and one
period: it sums each machine's components for ``[period start, t)`` and the
remaining service time ``R`` (:mod:`~edge_agent.contracts.sums`), evaluates
every term (:mod:`~edge_agent.contracts.compliance`), and returns a
:class:`ContractStatus` carrying the evidence two parties need to agree on it:
the contract hash, the spec version and the KPI profile hash of every machine.
The same function gives the live status (``final=False``) and the period's
record (``final=True``, ``t`` at or after the period's end; evaluating again
after late data gives its revision). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.contracts.compliance import RATIO_DECIMALS, TermStatus, evaluate_term, measurable
from edge_agent.contracts.model import Contract, contract_hash
from edge_agent.contracts.periods import Period
from edge_agent.contracts.response import Breakdown
from edge_agent.contracts.sums import MachineInput, PeriodSums, sum_inputs
from edge_agent.kpi.profile import SPEC_VERSION
from edge_agent.kpi.timeutil import format_instant

FLAG_LOW_COVERAGE = "low_coverage"


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractStatus:
    """Every term of one contract over one period, evaluated at ``at_ms``."""

    contract: str
    contract_hash: str
    period: Period
    at_ms: int
    final: bool
    sums: PeriodSums
    profile_hashes: tuple[tuple[str, str], ...]
    terms: tuple[TermStatus, ...]
    flags: tuple[str, ...] = ()

    def term(self, name: str) -> TermStatus:
        """The status of the term called ``name``.

        Raises:
            KeyError: when there is no such term.
        """
        for t in self.terms:
            if t.term == name:
                return t
        raise KeyError(name)

    @property
    def data_coverage(self) -> float | None:
        """``K / P`` of the period so far (None before any planned time)."""
        s = self.sums
        if s.planned_ms <= 0:
            return None
        return round(s.known_ms / s.planned_ms, RATIO_DECIMALS)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (instants as ISO 8601 UTC, times in seconds)."""
        s = self.sums
        return {
            "contract": self.contract,
            "period": self.period.name,
            "start": format_instant(self.period.start_ms),
            "end": format_instant(self.period.end_ms),
            "at": format_instant(self.at_ms),
            "final": self.final,
            "remaining_service_s": s.remaining_ms / 1000,
            "data_coverage": self.data_coverage,
            "components": {
                "planned_time_s": s.planned_ms / 1000,
                "unknown_time_s": s.unknown_ms / 1000,
                "running_time_s": s.running_ms / 1000,
                "micro_stop_time_s": s.micro_ms / 1000,
                "downtime_breakdown_s": s.breakdown_ms / 1000,
                "downtime_other_s": s.other_ms / 1000,
                "downtime_customer_s": s.customer_ms / 1000,
                "downtime_provider_s": s.provider_ms / 1000,
                "ttr_sum_s": s.ttr_ms / 1000,
                "failures": s.failures,
                "total_count": s.total,
                "good_count": s.good,
                "unattributed_total_count": s.unattributed,
            },
            "terms": [t.as_dict() for t in self.terms],
            "flags": list(self.flags),
            "spec_version": SPEC_VERSION,
            "contract_hash": self.contract_hash,
            "profile_hashes": dict(self.profile_hashes),
        }


def in_period(breakdowns: Iterable[Breakdown], period: Period) -> list[Breakdown]:
    """The breakdowns that belong to ``period``: those that started in it."""
    return [b for b in breakdowns if period.holds(b.start_ms)]


def evaluate_contract(
    contract: Contract,
    period: Period,
    inputs: Sequence[MachineInput],
    *,
    at_ms: int,
    final: bool = False,
    breakdowns: Iterable[Breakdown] = (),
) -> ContractStatus:
    """The status of every term of ``contract`` for ``period`` at ``at_ms``.

    Args:
        contract: the contract.
        period: the period evaluated (see :func:`~edge_agent.contracts.periods.period_at`).
        inputs: one entry per machine of the contract, components for
            ``[period start, at)`` and the machine's remaining service time.
        at_ms: the evaluation instant (for a final record, at or after the end).
        final: the period is closed: states are met / missed / not measurable.
        breakdowns: provider breakdowns with their answers (any period; those
            that started in ``period`` are used).

    Raises:
        ValueError: when ``inputs`` does not name exactly the contract's machines,
            or a final record is asked for before the period's end.
    """
    names = sorted(i.machine for i in inputs)
    if names != sorted(contract.machines):
        raise ValueError(f"inputs for {names}, contract {contract.name!r} has {contract.machines}")
    if final and at_ms < period.end_ms:
        raise ValueError("a final period record needs at_ms at or after the period's end")
    sums = sum_inputs(inputs)
    mine = in_period(breakdowns, period)
    terms = tuple(
        evaluate_term(
            term,
            sums,
            final=final,
            min_coverage=contract.min_coverage,
            at_risk_margin_s=contract.at_risk_margin_s,
            breakdowns=mine,
            at_ms=at_ms,
        )
        for term in contract.terms
    )
    flags = set(sums.flags)
    if sums.planned_ms > 0 and not measurable(sums, contract.min_coverage):
        flags.add(FLAG_LOW_COVERAGE)
    return ContractStatus(
        contract=contract.name,
        contract_hash=contract_hash(contract),
        period=period,
        at_ms=at_ms,
        final=final,
        sums=sums,
        profile_hashes=tuple(sorted((i.machine, i.profile_hash) for i in inputs)),
        terms=terms,
        flags=tuple(sorted(flags)),
    )
