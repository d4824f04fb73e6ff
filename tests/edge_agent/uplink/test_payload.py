"""Envelope encoding and its JSON Schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.uplink import payload

from .schemas import validate

KPI_DATA = {
    "machine": "press1",
    "window": "shift:2026-11-26/A",
    "window_kind": "shift",
    "start": "2026-11-26T05:00:00Z",
    "end": "2026-11-26T13:00:00Z",
    "revision": 0,
    "final": False,
    **dict.fromkeys(
        [
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
        ],
        0.0,
    ),
    "downtime_by_code": {"0": 0.0},
    "stops": 0,
    "micro_stops": 0,
    "failures": 0,
    "total_count": 0,
    "good_count": 0,
    "unattributed_total_count": 0,
    "out_of_plan_total_count": 0,
    "out_of_plan_good_count": 0,
    "data_coverage": None,
    "availability": None,
    "availability_if_unknown_down": None,
    "performance": None,
    "performance_capped": None,
    "quality": None,
    "oee": 0.0,
    "mtbf_s": None,
    "mttr_s": None,
    "sla_availability": None,
    "actual_cycle_time_s": None,
    "throughput_per_h": None,
    "flags": [],
}


def row(kind: str, data: dict[str, object], seq: int = 7) -> OutboxRow:
    return OutboxRow(seq, kind, 2, "t", json.dumps(data), 1795727700.1234, False)


def test_iso_utc_millisecond_rounding() -> None:
    """Timestamps render as UTC with exactly three decimals, carrying into the second."""
    assert payload.iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert payload.iso_utc(1.9996) == "1970-01-01T00:00:02.000Z"


def test_envelope_is_valid_json_with_verbatim_data() -> None:
    """The envelope embeds the stored data text unchanged and carries v, kind, agent, seq, ts."""
    msg = json.loads(payload.envelope(row("kpi", KPI_DATA), "gw1", "0a1b2c3d"))
    assert msg["v"] == 2
    assert msg["epoch"] == "0a1b2c3d"
    assert msg["seq"] == 7
    assert msg["agent"] == "gw1"
    assert msg["data"] == KPI_DATA
    validate(msg)


def test_stop_and_status_messages_validate() -> None:
    """Stop events and both status states match their schemas."""
    stop = {
        "machine": "m",
        "event_id": "m@2026-11-26T05:00:00.000Z",
        "start": "2026-11-26T05:00:00.000Z",
        "end": None,
        "duration_s": None,
        "category": "pending",
        "code": None,
        "fault_name": None,
    }
    validate(json.loads(payload.envelope(row("stop", stop), "gw1", "0a1b2c3d")))
    for state in ("online", "offline"):
        validate(json.loads(payload.status("gw1", state, 1795727700.0, site="s", epoch="0a1b2c3d")))


def test_kpi_schema_rejects_missing_fields_and_missing_seq() -> None:
    """A KPI record without a spec field, or a KPI envelope without seq, is invalid."""
    broken = dict(KPI_DATA)
    del broken["oee"]
    with pytest.raises(jsonschema.ValidationError):
        validate(json.loads(payload.envelope(row("kpi", broken), "gw1", "0a1b2c3d")))
    msg = json.loads(payload.envelope(row("kpi", KPI_DATA), "gw1", "0a1b2c3d"))
    del msg["seq"]
    with pytest.raises(jsonschema.ValidationError):
        validate(msg)
