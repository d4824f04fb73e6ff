"""On-device machine-state and OEE calculator (normative spec: kpi-spec.md).

Public API used by the runtime and ``edge-agent replay``; see ``docs/kpi.md``.
"""

from edge_agent.kpi.calculator import MachineCalculator
from edge_agent.kpi.events import LiveState, MachineState, StateInterval, StopClass, StopEvent
from edge_agent.kpi.profile import SPEC_VERSION, KpiProfile, parse_profile, profile_hash
from edge_agent.kpi.record import KpiRecord, aggregate
from edge_agent.kpi.replay import compute_records
from edge_agent.kpi.sample import Sample, SampleQuality, sample_from_json, sample_to_json

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
