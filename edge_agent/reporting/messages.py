"""The published form of a machine's stop events and KPI records (the ``data`` part).

One place for the shapes, so the dispatcher (stop events, live) and the reporter
(records, on the reporting interval) cannot drift apart. Pure functions.
"""

from __future__ import annotations

from typing import Any

from edge_agent.kpi import KpiRecord, StopEvent
from edge_agent.machines import MachineConfig


def stop_data(machine: MachineConfig, event: StopEvent) -> dict[str, Any]:
    """A stop event update of ``machine``."""
    data = event.as_dict()
    data["machine"] = machine.name
    code = data.get("fault")
    if code:
        data["fault_name"] = machine.fault_names.get(int(code))
    return data


def kpi_data(machine: MachineConfig, record: KpiRecord) -> dict[str, Any]:
    """A KPI record of ``machine``."""
    data = record.as_dict()
    data["machine"] = machine.name
    return data


def window_kind(data: dict[str, Any]) -> str:
    """The window family of a KPI record (``shift``, ``day`` ...), from its name."""
    return str(data["name"]).split(":", 1)[0]


def record_key(data: dict[str, Any]) -> str:
    """The outbox identity of a KPI record: a later message with the same key replaces it."""
    return f"{data['machine']}|{data['name']}|{data['revision']}|{data.get('final')}"
