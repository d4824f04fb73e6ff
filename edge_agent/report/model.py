"""What a report shows, as plain data: per machine the published records, intervals, stops.

Nothing here computes a KPI: the figures are the records' own (see :mod:`.figures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MachineData:
    """One machine's published material for the report's range."""

    name: str
    #: KPI records (``data`` of ``kpi`` messages), the highest revision per window name.
    records: list[dict[str, Any]] = field(default_factory=list)
    #: State intervals ``{"start", "end", "state", "fault"}`` (UNIX seconds), time order.
    intervals: list[dict[str, Any]] = field(default_factory=list)
    #: Stop events, the latest update per ``event_id``, time order.
    stops: list[dict[str, Any]] = field(default_factory=list)
    #: Fault code -> name (from the configuration, when the report has it).
    fault_names: dict[int, str] = field(default_factory=dict)
    #: The KPI profile (as in the ``config`` record / bundle), when known.
    profile: dict[str, Any] | None = None


@dataclass
class Verification:
    """The evidence chain's check: ``ok`` None when there is no chain to check."""

    ok: bool | None
    summary: str
    details: list[str] = field(default_factory=list)


@dataclass
class ReportData:
    """Everything one report page shows."""

    title: str
    source: str
    start: float
    end: float
    agent: str | None = None
    machines: dict[str, MachineData] = field(default_factory=dict)
    #: Latest contract status / period record per (contract, period), as published.
    contracts: list[dict[str, Any]] = field(default_factory=list)
    verification: Verification | None = None
    generated_at: float = 0.0
    notes: list[str] = field(default_factory=list)
