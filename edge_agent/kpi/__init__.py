"""On-device machine-state and OEE calculator (normative spec: kpi-spec.md).

Public API used by the runtime and ``edge-agent replay``; see ``docs/kpi.md``.

The calculator and the replay are imported on first use: loading a configuration
needs only the profile and the calendar (``tests/edge_agent/test_lean_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_agent.kpi.events import LiveState, MachineState, StateInterval, StopClass, StopEvent
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, parse_profile, profile_hash
from edge_agent.kpi.sample import Sample, SampleQuality, sample_from_json, sample_to_json
from edge_agent.lazy import lazy_members

if TYPE_CHECKING:
    from edge_agent.kpi.calculator import MachineCalculator
    from edge_agent.kpi.record import KpiRecord, aggregate
    from edge_agent.kpi.replay import compute_records

__getattr__ = lazy_members(
    globals(),
    {
        "MachineCalculator": "edge_agent.kpi.calculator",
        "KpiRecord": "edge_agent.kpi.record",
        "aggregate": "edge_agent.kpi.record",
        "compute_records": "edge_agent.kpi.replay",
    },
)


__all__ = [
    "KpiProfile",
    "parse_profile",
    "profile_hash",
    "SPEC_VERSION",
    "Sample",
    "SampleQuality",
    "LiveState",
    "sample_from_json",
    "sample_to_json",
    "MachineCalculator",
    "KpiRecord",
    "StopEvent",
    "StateInterval",
    "MachineState",
    "StopClass",
    "compute_records",
    "aggregate",
]
