"""Messages for the collector's tests, in the shapes the schemas in ``schemas/`` describe.

Hand-written samples are used only where a test needs exact control (sequence numbers,
revisions, invalid input); ``tests/integration/test_collector_agent.py`` stores what the
running agent really publishes.
"""

from __future__ import annotations

import json
from typing import Any

TIMES = (
    "calendar_time_s",
    "planned_time_s",
    "excluded_time_s",
    "non_scheduled_time_s",
    "unknown_time_s",
    "running_time_s",
    "micro_stop_time_s",
    "operating_time_s",
    "downtime_breakdown_s",
    "downtime_other_s",
    "downtime_total_s",
)


def kpi_data(
    machine: str = "press1",
    window: str = "day:2026-11-26",
    *,
    revision: int = 0,
    final: bool = True,
    planned: float = 86400.0,
    unknown: float = 0.0,
    operating: float | None = None,
    breakdown: float = 0.0,
    customer: float = 0.0,
    provider: float | None = None,
) -> dict[str, Any]:
    """A KPI record whose components are consistent (spec §2 identity)."""
    known = planned - unknown
    if operating is None:
        operating = known - breakdown
    other = known - operating - breakdown
    data: dict[str, Any] = dict.fromkeys(TIMES, 0.0)
    data.update(
        machine=machine,
        window=window,
        window_kind=window.split(":", 1)[0],
        start="2026-11-25T23:00:00.000Z",
        end="2026-11-26T23:00:00.000Z",
        revision=revision,
        final=final,
        calendar_time_s=86400.0,
        planned_time_s=planned,
        unknown_time_s=unknown,
        running_time_s=operating,
        operating_time_s=operating,
        downtime_breakdown_s=breakdown,
        downtime_other_s=other,
        downtime_total_s=breakdown + other,
        downtime_customer_s=customer,
        downtime_provider_s=breakdown - customer if provider is None else provider,
        ttr_sum_s=breakdown,
        downtime_by_code={"0": other} if other else {},
        stops=1 if breakdown or other else 0,
        micro_stops=0,
        failures=1 if breakdown else 0,
        total_count=100,
        good_count=98,
        unattributed_total_count=0,
        out_of_plan_total_count=0,
        out_of_plan_good_count=0,
        data_coverage=(known / planned) if planned else None,
        availability=round(operating / known, 6) if known else None,
        availability_if_unknown_down=None,
        performance=None,
        performance_capped=None,
        quality=0.98,
        oee=None,
        sla_availability=None,
        mtbf_s=None,
        mttr_s=None,
        actual_cycle_time_s=None,
        throughput_per_h=None,
        flags=[],
    )
    return data


def stop_data(
    machine: str = "press1",
    start: str = "2026-11-26T08:00:00.000Z",
    end: str | None = "2026-11-26T08:05:00.000Z",
    *,
    code: int | None = 42,
) -> dict[str, Any]:
    """A stop event in the decided shape."""
    return {
        "machine": machine,
        "event_id": f"{machine}@{start}",
        "start": start,
        "end": end,
        "duration_s": 300.0 if end else None,
        "category": "breakdown",
        "code": code,
        "fault_name": None,
        "planned": True,
    }


def telemetry_data(device: str = "plc", n: int = 1) -> dict[str, Any]:
    """A telemetry message with ``n`` snapshots of two tags."""
    return {
        "device": device,
        "t0": 1795680000,
        "samples": [[i * 100, {"speed": 1.5 * i, "running": True}] for i in range(n)],
    }


def health_data(backlog: int = 0) -> dict[str, Any]:
    """A health message with the uplink slot filled."""
    return {
        "version": "0.1.0",
        "pid": 1234,
        "uptime_s": 12.5,
        "cpu_percent": 3.2,
        "rss_bytes": 50_000_000,
        "disk_free_bytes": 1_000_000_000,
        "disk_total_bytes": 2_000_000_000,
        "cpu_temp_c": None,
        "clock_synced": True,
        "clock_source": "adjtimex",
        "buffer": None,
        "uplink": {"connected": True, "backlog": backlog, "in_flight": 0, "published": 10},
        "devices": None,
        "events": None,
        "pipeline": None,
    }


DATA = {
    "kpi": kpi_data,
    "stop": stop_data,
    "telemetry": telemetry_data,
    "health": health_data,
}


def message(
    kind: str,
    seq: int | None,
    *,
    agent: str = "gw-1",
    data: dict[str, Any] | None = None,
    epoch: str | None = None,
    ts: str = "2026-11-26T23:00:01.000Z",
) -> dict[str, Any]:
    """An envelope (v1 without epoch, v2 with)."""
    doc: dict[str, Any] = {"v": 1 if epoch is None else 2, "kind": kind, "agent": agent}
    if epoch is not None:
        doc["epoch"] = epoch
    if seq is not None:
        doc["seq"] = seq
    doc["ts"] = ts
    doc["data"] = data if data is not None else DATA[kind]()
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    """Compact JSON like the agent's."""
    return json.dumps(doc, separators=(",", ":")).encode()


def payload(kind: str, seq: int | None, **kwargs: Any) -> bytes:
    """``encode(message(...))``."""
    return encode(message(kind, seq, **kwargs))


def topic(kind: str, agent: str = "gw-1") -> str:
    """The agent's default topic for a kind."""
    return {
        "kpi": f"edge/site/{agent}/press1/kpi/day",
        "stop": f"edge/site/{agent}/press1/stop",
        "health": f"edge/site/{agent}/health",
        "telemetry": f"edge/site/{agent}/telemetry/plc",
        "status": f"edge/site/{agent}/status",
    }.get(kind, f"edge/site/{agent}/{kind}")
