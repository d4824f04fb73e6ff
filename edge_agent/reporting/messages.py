"""The published form of a machine's stop events and KPI records (the ``data`` part).

One place for the shapes, so the dispatcher (stop events, live) and the reporter
(records, on the reporting interval) cannot drift apart. Pure functions.
"""

from __future__ import annotations

from typing import Any

from edge_agent.kpi import KpiRecord, StopEvent
from edge_agent.kpi.timeutil import format_instant
from edge_agent.machines import MachineConfig


def stop_event_id(machine: str, start: float) -> str:
    """The stable id of a stop event: its machine and start instant (``press1@2026-...Z``).

    The same stop re-derived after a crash has the same id; acknowledgements name it.
    """
    return f"{machine}@{format_instant(round(start * 1000))}"


def stop_data(machine: MachineConfig, event: StopEvent) -> dict[str, Any]:
    """A stop event update of ``machine``."""
    data = event.as_dict()
    data["machine"] = machine.name
    data["event_id"] = stop_event_id(machine.name, event.start)
    data["fault_name"] = machine.fault_names.get(event.fault) if event.fault else None
    return data


def kpi_data(machine: MachineConfig, record: KpiRecord) -> dict[str, Any]:
    """A KPI record of ``machine``."""
    data = record.as_dict()
    data["machine"] = machine.name
    return data


def window_kind(data: dict[str, Any]) -> str:
    """The window family of a KPI record (``shift``, ``day`` ...)."""
    return str(data.get("window_kind") or str(data["window"]).split(":", 1)[0])


def record_key(data: dict[str, Any]) -> str:
    """The outbox identity of a KPI record: a later message with the same key replaces it."""
    return f"{data['machine']}|{data['window']}|{data['revision']}|{data.get('final')}"
