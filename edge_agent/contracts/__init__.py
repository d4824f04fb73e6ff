"""Outcome contracts on the device (spec §3.13): terms, compliance so far, budget, forecast.

A contract (``[contracts.NAME]``) holds KPIs of some machines to levels over
settlement periods. This package is pure (no I/O, no clock): the runtime feeds
it window components and stop events and publishes what it returns. One job
per module:

* :mod:`.model`: the contract's definition and its hash;
* :mod:`.parse`: strict reading of the TOML tables;
* :mod:`.periods`: month / quarter / rolling 30 days / explicit dates;
* :mod:`.service`: service hours on a machine and the remaining service time R;
* :mod:`.sums`: sums of components over machines;
* :mod:`.figures`: so far, best, worst, forecast and budget per KPI;
* :mod:`.response`: response time, its statistic and the bound crossings;
* :mod:`.compliance`: the state of each level and term;
* :mod:`.status`: a whole contract at an instant.

See ``docs/contracts.md``.
"""

from edge_agent.contracts.compliance import LevelStatus, State, TermStatus
from edge_agent.contracts.model import (
    CalendarKind,
    Contract,
    Direction,
    Kpi,
    PeriodKind,
    ResponseTo,
    ServiceCalendar,
    Term,
    contract_hash,
)
from edge_agent.contracts.parse import REPORTING_CONTRACT, parse_contract, reporting_contract
from edge_agent.contracts.periods import Period, next_period, period_at
from edge_agent.contracts.response import Breakdown, bound_crossings
from edge_agent.contracts.service import remaining_service_s, service_profile
from edge_agent.contracts.status import ContractStatus, evaluate_contract
from edge_agent.contracts.sums import MachineInput, PeriodSums

__all__ = [
    "Contract",
    "Term",
    "Kpi",
    "Direction",
    "CalendarKind",
    "PeriodKind",
    "ResponseTo",
    "ServiceCalendar",
    "contract_hash",
    "parse_contract",
    "reporting_contract",
    "REPORTING_CONTRACT",
    "Period",
    "period_at",
    "next_period",
    "service_profile",
    "remaining_service_s",
    "MachineInput",
    "PeriodSums",
    "Breakdown",
    "bound_crossings",
    "State",
    "LevelStatus",
    "TermStatus",
    "ContractStatus",
    "evaluate_contract",
]
