"""Envelope checks, old data shapes and schema validation of single messages (pure)."""

from __future__ import annotations

import json

import pytest

from edge_agent.collect import legacy
from edge_agent.collect.envelope import Message, Rejected, classify
from edge_agent.collect.schemas import load_schemas

from .samples import encode, health_data, kpi_data, message, payload, stop_data

SCHEMAS = load_schemas()


def test_v1_message_reads_with_empty_epoch() -> None:
    """Envelope v1 has no epoch: its numbering epoch is ''."""
    got = classify(payload("kpi", 7), SCHEMAS)
    assert isinstance(got, Message)
    assert (got.version, got.agent, got.epoch, got.seq, got.kind) == (1, "gw-1", "", 7, "kpi")
    assert got.validated
    assert not got.upgraded


def test_v2_message_carries_its_epoch() -> None:
    """Envelope v2 adds epoch; its data is still validated against the kind's schema."""
    got = classify(payload("telemetry", 3, epoch="0000e7f3"), SCHEMAS)
    assert isinstance(got, Message)
    assert (got.version, got.epoch, got.seq) == (2, "0000e7f3", 3)
    bad = message("telemetry", 3, epoch="0000e7f3", data={"device": "plc"})
    rejected = classify(encode(bad), SCHEMAS)
    assert isinstance(rejected, Rejected)
    assert rejected.reason.startswith("schema: data")
    assert (rejected.agent, rejected.epoch, rejected.seq) == ("gw-1", "0000e7f3", 3)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"v": 1, "x": NaN}', "non-finite"),
        (b'{"v": 1, "x": 1e400}', "out of range"),
        (b'{"v": 3, "kind": "kpi"}', "unsupported version"),
        (b'{"v": true, "kind": "kpi"}', "unsupported version"),
    ],
)
def test_undecodable_payloads_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    """Bytes that are not a storable JSON object never reach the database."""
    got = classify(raw, SCHEMAS)
    assert isinstance(got, Rejected)
    assert reason in got.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"seq": 0}, "seq must be"),
        ({"seq": 2**63}, "seq must be"),
        ({"seq": "5"}, "seq must be"),
        ({"ts": "2026-11-26 25:00"}, "ts must be"),
        ({"ts": "2026-02-30T00:00:00Z"}, "ts must be"),
        ({"agent": ""}, "agent must be"),
        ({"data": []}, "data must be"),
        ({"epoch": "x"}, "unknown field"),  # epoch is not part of v1
        ({"extra": 1}, "unknown field"),
    ],
)
def test_envelope_fields_are_checked(change: dict[str, object], reason: str) -> None:
    """Each envelope field is checked before any schema (kind, agent, seq, ts, data)."""
    doc = message("kpi", 5)
    doc.update(change)
    got = classify(encode(doc), SCHEMAS)
    assert isinstance(got, Rejected)
    assert reason in got.reason


def test_v2_without_epoch_is_rejected() -> None:
    """v2 must say which epoch its numbers belong to."""
    doc = message("kpi", 5, epoch="a")
    del doc["epoch"]
    got = classify(encode(doc), SCHEMAS)
    assert isinstance(got, Rejected)
    assert "needs epoch" in got.reason


def test_nul_and_lone_surrogate_are_refused() -> None:
    """PostgreSQL stores neither a NUL character nor a lone surrogate: refuse them early."""
    for text in ("a\u0000b", "\ud800"):
        doc = message("telemetry", 1)
        doc["data"]["samples"][0][1]["speed"] = text
        got = classify(json.dumps(doc).encode(), SCHEMAS)
        assert isinstance(got, Rejected), text
    fine = message("telemetry", 1)
    fine["data"]["samples"][0][1]["speed"] = "Störung"
    assert isinstance(classify(json.dumps(fine).encode(), SCHEMAS), Message)


def test_status_has_no_seq() -> None:
    """A status message is accepted without seq and refused with one."""
    ok = message("status", None, data={"state": "online", "site": "s1"})
    got = classify(encode(ok), SCHEMAS)
    assert isinstance(got, Message)
    assert got.seq is None
    bad = message("status", 4, data={"state": "online"})
    assert isinstance(classify(encode(bad), SCHEMAS), Rejected)


def test_unknown_kind_passes_unvalidated() -> None:
    """A kind without a schema (e.g. a newer agent's 'contract') is accepted, not validated."""
    got = classify(payload("contract", 9, data={"anything": [1, 2]}), SCHEMAS)
    assert isinstance(got, Message)
    assert not got.validated


def test_schema_failure_names_the_field() -> None:
    """The quarantine reason says which field broke which rule."""
    data = kpi_data()
    data["stops"] = -1
    got = classify(payload("kpi", 2, data=data), SCHEMAS)
    assert isinstance(got, Rejected)
    assert "data/stops" in got.reason


def test_date_time_format_is_enforced() -> None:
    """A record instant that is not RFC 3339 fails the schema (jsonschema alone skips it)."""
    data = kpi_data()
    data["start"] = "yesterday"
    got = classify(payload("kpi", 2, data=data), SCHEMAS)
    assert isinstance(got, Rejected)
    assert "start" in got.reason


def test_old_kpi_shape_is_upgraded() -> None:
    """KPI records published with 'name' (before this round) are read as 'window'."""
    data = kpi_data(window="shift:2026-11-26:A")
    del data["window"], data["window_kind"]
    data["name"] = "shift:2026-11-26:A"
    got = classify(payload("kpi", 2, data=data), SCHEMAS)
    assert isinstance(got, Message)
    assert got.upgraded
    assert got.data["window"] == "shift:2026-11-26:A"
    assert got.data["window_kind"] == "shift"
    assert "name" not in got.data


def test_old_stop_shape_is_upgraded() -> None:
    """Stop events with UNIX instants, class and fault are read in the decided shape."""
    old = {
        "machine": "press",
        "start": 1795680000.5,
        "end": None,
        "duration_s": 0.0,
        "class": "breakdown",
        "fault": 42,
    }
    got = classify(payload("stop", 3, data=old), SCHEMAS)
    assert isinstance(got, Message)
    assert got.upgraded
    assert got.data["start"] == "2026-11-26T08:00:00.500Z"
    assert got.data["end"] is None
    assert got.data["duration_s"] is None
    assert (got.data["category"], got.data["code"], got.data["fault_name"]) == (
        "breakdown",
        42,
        None,
    )
    assert got.data["event_id"] == "press@2026-11-26T08:00:00.500Z"
    closed = legacy.upgrade("stop", {**old, "end": 1795680010.5, "duration_s": 10.0, "fault": 0})
    assert closed is not None
    assert closed["code"] is None
    assert closed["duration_s"] == 10.0


def test_old_health_shape_is_upgraded() -> None:
    """Health from agents before the event catalogue carried 'errors' (always null)."""
    data = health_data()
    del data["events"]
    data["errors"] = None
    got = classify(payload("health", 4, data=data), SCHEMAS)
    assert isinstance(got, Message)
    assert got.upgraded
    assert got.data["events"] is None
    assert "errors" not in got.data


def test_current_shapes_are_left_alone() -> None:
    """A record already in the decided shape is not rewritten."""
    assert legacy.upgrade("stop", stop_data()) is None
    assert legacy.upgrade("kpi", kpi_data()) is None
    assert legacy.upgrade("health", {"x": 1}) is None
