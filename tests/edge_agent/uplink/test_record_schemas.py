"""The typed record builders and ``schemas/`` describe the same messages (no drift).

Every record type is built by the code the runtime publishes with (the calculator and
its live tracker, :func:`edge_agent.reporting.messages.kpi_data` / ``stop_data``, the
buffer's :class:`~edge_agent.buffer.recovery.GapReport`), wrapped in the real envelope
and validated. Beyond validity, the field sets must match: a field the builder emits
that its schema does not declare (``additionalProperties`` would let it through
silently), or a required field the builder does not emit, fails here. The end-to-end
capture of the running agent is tests/integration/test_schema_capture.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

import pytest

from edge_agent.buffer.outbox import OutboxRow
from edge_agent.buffer.recovery import GapReport
from edge_agent.kpi import KpiProfile, KpiRecord, MachineCalculator, Sample, StopClass, StopEvent
from edge_agent.kpi.profile import UtcInterval
from edge_agent.machines import MachineConfig
from edge_agent.reporting.messages import kpi_data, stop_data
from edge_agent.uplink import payload

from .schemas import SCHEMA_DIR, validate

T0 = 1_715_580_000  # 2024-05-13T06:00:00Z
HOUR = "hour:2024-05-13T06"
MACHINE = cast(
    "MachineConfig", SimpleNamespace(name="press1", fault_names={17: "Hydraulic pressure low"})
)


def _data_schema(kind: str) -> dict[str, Any]:
    doc = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    return cast("dict[str, Any]", doc["properties"]["data"])


def _message(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    row = OutboxRow(9, kind, 2, "t", json.dumps(data), float(T0), False)
    return cast("dict[str, Any]", json.loads(payload.envelope(row, "gw1", "0a1b2c3d")))


def _same_fields(kind: str, data: dict[str, Any], optional: frozenset[str] = frozenset()) -> None:
    schema = _data_schema(kind)
    declared = set(schema["properties"])
    assert set(data) - declared == set(), f"{kind}: emitted but not in the schema"
    missing = set(schema.get("required", ())) - set(data) - optional
    assert missing == set(), f"{kind}: required by the schema but not emitted"


def _day() -> tuple[list[StopEvent], list[KpiRecord]]:
    """One planned hour: a micro-stop, a breakdown on 17, other downtime; a stop after it."""
    profile = KpiProfile(
        ideal_cycle_time_s=1.0,
        micro_stop_threshold_s=60,
        max_gap_s=30,
        planned_windows=(UtcInterval(start_ms=T0 * 1000, end_ms=(T0 + 3600) * 1000),),
    )
    calc = MachineCalculator(profile, allowed_lateness_s=0)
    calc.open_window(HOUR, T0, T0 + 3600)
    calc.open_window("contract:svc:2024-05-13", T0, T0 + 7200)
    stopped: dict[int, int] = {}  # second -> fault (-1: stopped without code)
    for a, b, code in ((10, 50, -1), (100, 300, 17), (400, 500, -1), (3700, 3800, -1)):
        for t in range(a, b, 10):
            stopped[t] = code
    events: list[StopEvent] = []
    records: list[KpiRecord] = []
    count = 0
    for t in range(0, 3900, 10):
        code = stopped.get(t)
        run = code is None
        count += 10 if run else 0
        sample = Sample(
            t=T0 + t, run=run, fault=max(code or 0, 0), good=count - count // 50, total=count
        )
        events += calc.add(sample)
        if t in (20, 120, 250):  # so far: a pending stop, a breakdown still open
            records += [calc.record(name, now=T0 + t + 5) for name in calc.window_names()]
        records += calc.close_due(T0 + t) + calc.revisions()
    records.append(records[-1].with_meta(revision=1))
    return events, records


def test_every_kpi_record_validates_and_declares_every_field() -> None:
    """So-far (with pending time), final and revised records: valid, no undeclared field."""
    _, records = _day()
    assert any(r.pending_stop_s > 0 and not r.final for r in records)
    assert any(r.final for r in records)
    for rec in records:
        data = kpi_data(MACHINE, rec)
        validate(_message("kpi", data))
        _same_fields("kpi", data)


def test_every_stop_category_validates_with_the_interval_code_and_name() -> None:
    """pending, micro, breakdown, other, unplanned: valid; code and name as the interval's."""
    events, _ = _day()
    seen: set[str] = set()
    for event in events:
        data = stop_data(MACHINE, event)
        validate(_message("stop", data))
        _same_fields("stop", data, optional=frozenset({"acknowledged_at", "arrived_at"}))
        seen.add(data["category"])
        assert (data["end"] is None) == (data["duration_s"] is None)
        if event.fault == 17:
            assert (data["code"], data["fault_name"]) == (17, "Hydraulic pressure low")
        else:
            assert (data["code"], data["fault_name"]) == (None, None)
    assert seen == {c.value for c in StopClass}
    ended = [e for e in events if e.end is not None]
    assert [(e.cls, e.fault, e.duration_s) for e in ended] == [
        (StopClass.MICRO, 0, 40.0),
        (StopClass.BREAKDOWN, 17, 200.0),
        (StopClass.OTHER, 0, 100.0),
        (StopClass.UNPLANNED, 0, 0.0),
    ]


@pytest.mark.parametrize("restarted", [False, True])
def test_gap_reports_validate(restarted: bool) -> None:
    """Both forms of a gap report (numbering continues / restarted) match the schema."""
    report = GapReport(
        reason="database_corrupt",
        detail="numbering continues above 120",
        seq_from=None if restarted else 101,
        seq_to=None if restarted else 120,
        lost_messages=None if restarted else 20,
        lost_from=float(T0),
        lost_to=float(T0 + 60),
        epoch_restarted=restarted,
        moved_to="/var/lib/edge-agent/buffer.db.corrupt-1",
        detected=float(T0 + 90),
    )
    data = report.as_data()
    validate(_message("gap", data))
    _same_fields("gap", data)


def test_the_documented_stop_example_validates() -> None:
    """docs/payloads.md's stop event example is a valid stop event of today's shape."""
    text = (SCHEMA_DIR.parent / "docs" / "payloads.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    (stop,) = [json.loads(b) for b in blocks if '"event_id"' in b]
    validate(_message("stop", stop))
    _same_fields("stop", stop, optional=frozenset({"acknowledged_at", "arrived_at"}))
