"""A small buffer database with published material, for the report's unit tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_agent.buffer.schema import open_database

T0 = 1_796_385_600.0  # 2026-12-04T12:00:00Z
RECORD: dict[str, Any] = {
    "name": "hour:2026-12-04T12",
    "machine": "press1",
    "start": "2026-12-04T12:00:00Z",
    "end": "2026-12-04T13:00:00Z",
    "revision": 0,
    "final": True,
    "calendar_time_s": 3600.0,
    "planned_time_s": 3600.0,
    "unknown_time_s": 600.0,
    "running_time_s": 2000.0,
    "micro_stop_time_s": 100.0,
    "operating_time_s": 2100.0,
    "downtime_breakdown_s": 700.0,
    "downtime_other_s": 200.0,
    "downtime_total_s": 900.0,
    "downtime_by_code": {"17": 500.0, "42": 200.0, "0": 200.0},
    "downtime_customer_s": 200.0,
    "downtime_provider_s": 500.0,
    "stops": 3,
    "micro_stops": 1,
    "failures": 2,
    "total_count": 1000,
    "good_count": 950,
    "data_coverage": 0.833333,
    "availability": 0.7,
    "performance": 0.952381,
    "performance_capped": 0.952381,
    "quality": 0.95,
    "oee": 0.633333,
    "sla_availability": 0.766667,
    "mtbf_s": 1050.0,
    "mttr_s": 350.0,
    "flags": [],
    "spec_version": "kpi-spec/1",
    "profile_hash": "ab" * 32,
}
INTERVALS = [
    (600.0, 1000.0, "running", 0),
    (1000.0, 1100.0, "stopped", 0),  # micro-stop
    (1100.0, 1600.0, "stopped", 17),  # breakdown 17
    (1600.0, 2000.0, "running", 0),
    (2000.0, 2200.0, "stopped", 42),  # breakdown 42 (the customer's)
    (2200.0, 2400.0, "stopped", 0),  # idle, no code
    (2400.0, 3600.0, "running", 0),
]


def stops() -> list[dict[str, Any]]:
    """The stop events of :data:`INTERVALS` (closed)."""
    out = []
    for a, b, state, code in INTERVALS:
        if state != "stopped":
            continue
        cls = "micro" if b - a <= 120 else "breakdown" if code else "other"
        out.append(
            {
                "start": T0 + a,
                "end": T0 + b,
                "duration_s": b - a,
                "class": cls,
                "fault": code,
                "machine": "press1",
                "event_id": f"press1@{T0 + a}",
                "acknowledged_at": "2026-12-04T12:20:00Z" if code == 17 else None,
                "arrived_at": None,
            }
        )
    return out


def make_buffer(path: Path) -> Path:
    """A buffer with one final hour record, its intervals and its stop events."""
    con, _ = open_database(path, 16 * 1024 * 1024)
    try:
        con.execute(
            "INSERT INTO kpi_records (record_key, created, seq, data, published) "
            "VALUES (?, ?, 1, ?, NULL)",
            ("press1|hour|0|True", T0 + 3600, json.dumps(RECORD)),
        )
        for a, b, state, code in INTERVALS:
            data = {"start": T0 + a, "end": T0 + b, "state": state, "fault": code}
            con.execute(
                "INSERT INTO intervals (machine, start, end, data) VALUES (?, ?, ?, ?)",
                ("press1", T0 + a, T0 + b, json.dumps(data)),
            )
        for seq, stop in enumerate(stops(), start=2):
            con.execute(
                "INSERT INTO stop_events (record_key, created, seq, data) VALUES (?, ?, ?, ?)",
                (f"seq:{seq}", stop["end"], seq, json.dumps(stop)),
            )
    finally:
        con.close()
    return path
