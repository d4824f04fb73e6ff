"""Service hours of a contract on one machine, and the period's remaining service time R.

A contract's figures for a machine are the KPI components (spec §3.11) of the
period measured on the contract's *service hours*. :func:`service_profile`
gives the KPI profile those components are computed with: the machine's own
profile (every KPI parameter, customer fault codes and planned-maintenance
exclusions unchanged) with only its calendar replaced:

* ``machine``: the profile's own shifts and planned windows;
* ``24/7``: every local day from midnight to midnight in the contract's zone;
* ``shifts``: the contract's shifts in the contract's zone.

The contract's own exclusions (announced maintenance) are added to the
machine's. With ``machine`` and no contract exclusions it *is* the machine's
profile, so the contract reuses the machine's KPI records unchanged.

:func:`remaining_service_s` is ``R`` of spec §3.13: planned service time of
the period after ``t``, from the same :class:`~edge_agent.kpi.calendar.Planner`
the calculator uses (local shift expansion, DST-correct). Pure, no I/O.
"""

from __future__ import annotations

import dataclasses

from edge_agent.contracts.model import CalendarKind, Contract
from edge_agent.contracts.periods import Period
from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.profile import KpiProfile, Shift

ALL_DAY = Shift(name="24-7", start_min=0, end_min=0)
"""Local midnight to the next local midnight, every day (23 h / 25 h on DST days)."""


def service_profile(contract: Contract, machine: KpiProfile) -> KpiProfile:
    """The KPI profile of ``machine`` on the contract's service hours."""
    cal = contract.calendar
    exclusions = machine.exclusions + cal.exclusions
    if cal.kind is CalendarKind.MACHINE:
        if not cal.exclusions:
            return machine
        return dataclasses.replace(machine, exclusions=exclusions)
    shifts = (ALL_DAY,) if cal.kind is CalendarKind.ALWAYS else cal.shifts
    return dataclasses.replace(
        machine,
        timezone=contract.timezone,
        planned_windows=(),
        shifts=shifts,
        exclusions=exclusions,
        always_planned=False,  # the contract's hours, not the machine's 24/7 default
    )


def remaining_service_s(planner: Planner, period: Period, t_ms: int) -> float:
    """Planned service seconds of ``period`` from ``t_ms`` to its end (0 after the end)."""
    start = max(t_ms, period.start_ms)
    return planner.planned_length(start, period.end_ms) / 1000 if start < period.end_ms else 0.0
