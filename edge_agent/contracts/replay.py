"""Recompute a contract's status or period record from recorded samples (``edge-agent replay``).

The same path as the running agent: each machine's samples go through the KPI
calculator on the contract's service hours (:func:`~edge_agent.contracts.service.service_profile`),
the contract's KPI windows (:func:`~edge_agent.contracts.book.chunk_at`) are
evaluated from them, the stop events classified on the way give the breakdowns,
and a :class:`~edge_agent.contracts.book.ContractBook` turns it all into the
status at an instant or, for a closed period, its record as the agent publishes it
(evaluated at the period's end plus the allowed lateness, or at the latest answer
or bound crossing after it). So a customer with the exported samples, answers and
the agent's configuration gets the same numbers and the same contract hash.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent.contracts.book import ContractBook, chunk_at
from edge_agent.contracts.model import Contract, Kpi
from edge_agent.contracts.periods import Period, period_at
from edge_agent.contracts.service import service_profile
from edge_agent.kpi import KpiProfile, MachineCalculator, Sample, compute_records
from edge_agent.kpi.events import StopClass
from edge_agent.kpi.timeutil import format_instant


def _chunks(contract: Contract, period: Period) -> list[tuple[str, int, int]]:
    out: dict[str, tuple[str, int, int]] = {}
    t = period.start_ms
    while t < period.end_ms:
        chunk = chunk_at(contract, t)
        if chunk is None:
            break
        # rolling: the day windows; other periods: the period itself.
        start, end = max(chunk.start_ms, period.start_ms), min(chunk.end_ms, period.end_ms)
        out[chunk.name] = (chunk.name, start, end)
        t = chunk.end_ms
    return list(out.values())


def replay_contract(
    contract: Contract,
    profiles: Mapping[str, KpiProfile],
    samples: Mapping[str, Sequence[Sample]],
    *,
    at_ms: int,
    final: bool,
    allowed_lateness_s: float,
    answers: Mapping[str, tuple[int | None, int | None]] | None = None,
) -> dict[str, Any]:
    """The contract's status at ``at_ms``, or the record of the period holding it (``final``).

    Args:
        contract: The contract.
        profiles: Each machine's own KPI profile (the service hours are applied here).
        samples: Each machine's samples, in arrival order.
        at_ms: The evaluation instant; with ``final``, any instant of the period.
        final: Give the closed period's record instead of the status at ``at_ms``.
        allowed_lateness_s: The agent's ``[reporting] allowed_lateness_s``.
        answers: ``event_id -> (acknowledged_ms, arrived_ms)``.

    Raises:
        ValueError: no period holds ``at_ms``, or a machine has no profile or samples.
    """
    period = period_at(contract, at_ms)
    if period is None:
        raise ValueError(f"no period of contract {contract.name!r} holds {format_instant(at_ms)}")
    missing = [m for m in contract.machines if m not in profiles or m not in samples]
    if missing:
        raise ValueError(f"no profile or samples for machine(s) {missing}")
    service = {m: service_profile(contract, profiles[m]) for m in contract.machines}
    book = ContractBook(contract, service, allowed_lateness_s=allowed_lateness_s)
    until = period.end_ms if final else at_ms
    for machine in contract.machines:
        mine = [s for s in samples[machine] if s.t_ms <= until]
        windows = [(n, s / 1000, min(e, until) / 1000) for n, s, e in _chunks(contract, period)]
        windows = [w for w in windows if w[2] > w[1]]
        for name, rec in compute_records(service[machine], mine, windows).items():
            start = round(rec.start * 1000)
            book.take(machine, name, start, round(rec.end * 1000), rec.components(), final=True)
        calc = MachineCalculator(service[machine], allowed_lateness_s=allowed_lateness_s)
        for s in sorted(mine, key=lambda s: s.t_ms):
            for ev in calc.add(s):
                if ev.cls is StopClass.BREAKDOWN:
                    event_id = f"{machine}@{format_instant(round(ev.start * 1000))}"
                    book.stop(machine, event_id, round(ev.start * 1000), ev.cls, ev.fault)
    times = dict(answers or {})
    if not final:
        return book.evaluate(period, at_ms, times).as_dict()
    # The agent's latest revision: after the close, every answer and every bound crossing.
    instants = [period.end_ms + round(allowed_lateness_s * 1000)]
    instants += [v for pair in times.values() for v in pair if v is not None]
    bounds = [
        round(lv.value * 1000)
        for t in contract.terms
        if t.kpi is Kpi.RESPONSE_TIME
        for lv in t.levels
    ]
    instants += [start + b for _m, start in book.breakdowns.values() for b in bounds]
    (record,) = book.round(max(instants), times).periods
    record.pop("revision", None)
    return record
