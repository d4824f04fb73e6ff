"""Outcome contracts on the device (spec §3.13): terms, compliance so far, budget, forecast.

A contract (``[contracts.NAME]``) holds KPIs of some machines to levels over
settlement periods. This package is pure (no I/O, no clock). One job per module:

* :mod:`.model`: the contract's definition and its hash;
* :mod:`.parse`: strict reading of the TOML tables.

See ``docs/contracts.md``.
"""

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
]
