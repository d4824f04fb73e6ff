"""The schemas are the contract: every message the running agent publishes validates.

Bundled Modbus simulator (10x) -> ``python -m edge_agent run`` -> real Mosquitto -> a
subscriber on ``edge/#`` that keeps every message. The scripted day covers every kind the
agent emits in normal operation: KPI records (so far, final, hour windows and a contract
window), stop events (a micro-stop without code, a breakdown on fault 17 with its name,
each opened and closed), telemetry, health, status, the evidence kinds (``config`` at
start, ``key`` when the chain starts) and the contract kinds (``contract`` status, a
``contract_alert`` when the tight target is breached, the ``contract_period`` when the
explicit period closes). Each message is validated with ``jsonschema`` (Draft 2020-12,
formats checked) against ``schemas/<kind>.schema.json``; the failures are reported per
kind. ``gap`` needs a lost database and is covered by the record-builder test
(tests/edge_agent/uplink/test_record_schemas.py).

Wall time: about 15 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from simulators.host import SimulatorHost
from tests.integration.sim_config import agent_section, machine_section
from tests.plugins.broker import Mosquitto, MqttCollector

from ..edge_agent.uplink.schemas import SCHEMA_DIR, validate

pytestmark = pytest.mark.integration

SPEED = 10.0
POLL_S = 0.1

SCENARIO = """
[scenario]
name = "schema-capture"
description = "running; a 5 s idle (micro-stop); fault 17 for 40 s; running"

[machines.M1]
unit_id = 1
ideal_cycle_s = 1.0
cycle_jitter = 0.0
scrap_rate = 0.05

[machines.M1.alarm_bits]
17 = 3

[[machines.M1.events]]
at_s = 10
action = "idle"
duration_s = 5

[[machines.M1.events]]
at_s = 30
action = "fault"
code = 17
duration_s = 40
"""

DEVICE = """
[devices.plc]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = 1
interval_ms = 100
addressing = "zero"
timeout_ms = 500
publish = "none"

[devices.plc.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.plc.tags.fault_code]
table = "holding"
address = 2
type = "uint16"
publish = "change"

[devices.plc.tags.good]
table = "holding"
address = 10
type = "uint32"
publish = "aggregate"
aggregate_s = 1

[devices.plc.tags.total]
table = "holding"
address = 14
type = "uint32"
publish = "change"
"""

KPI = """
ideal_cycle_time_s = 0.1
micro_stop_threshold_s = 1.0
max_gap_s = 1.0

[[machines.press.kpi.shifts]]
start = "00:00"
end = "00:00"

[machines.press.fault_names]
17 = "Hydraulic pressure low"
"""


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _contract(start: float, end: float) -> str:
    return f"""
[contracts.svc]
machines = ["press"]
timezone = "UTC"
calendar = "24/7"
period = "dates"
start = {_iso(start)}
end = {_iso(end)}

[contracts.svc.terms.availability]
kpi = "sla_availability"
target = 0.999
minimum = 0.99

[contracts.svc.terms.repair]
kpi = "mttr_s"
target = 1
"""


def _config(tmp_path: Path, mqtt_port: int, modbus_port: int, period_end: float) -> Path:
    text = agent_section(
        agent_id="schema-gw",
        state=tmp_path / "state",
        mqtt_port=mqtt_port,
        windows='["hour", "day"]',
        allowed_lateness_s=1.0,
        status_interval_s=0.5,
        health_interval_s=1.0,
    )
    text += "\n[telemetry]\ninterval_s = 0.5\n"
    text += DEVICE.format(port=modbus_port)
    text += machine_section("press", device="plc", kpi=KPI)
    text += _contract(period_end - 3600, period_end)
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def _declared(kind: str) -> set[str] | None:
    """The ``data`` fields a kind's schema declares (None: it declares none)."""
    doc = json.loads((SCHEMA_DIR / f"{kind}.schema.json").read_text())
    props = doc.get("properties", {}).get("data", {}).get("properties")
    return set(props) if isinstance(props, dict) else None


def _docs(collector: MqttCollector) -> list[dict[str, Any]]:
    return [m.json() for m in collector.snapshot() if m.payload.startswith(b"{")]


def _done(docs: list[dict[str, Any]]) -> bool:
    kinds = {d.get("kind") for d in docs}
    ended = [d for d in docs if d.get("kind") == "stop" and d["data"].get("end") is not None]
    return "contract_period" in kinds and len(ended) >= 2


async def test_every_published_message_validates(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Every kind the running agent publishes matches its schema, field for field."""
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO)
    period_end = float(int(time.time()) + 10)
    async with SimulatorHost(
        str(scenario), speed=SPEED, seed=3, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
    ) as sim:
        config = _config(tmp_path, mosquitto.port, sim.modbus_port, period_end)
        with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as collector:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                done = False
                for _ in range(30):  # bounded: 30 x 1 s; stop early if the agent died
                    done = await asyncio.to_thread(
                        collector.wait_for, lambda _ms: _done(_docs(collector)), 1.0
                    )
                    if done or proc.poll() is not None:
                        break
            finally:
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=20)
            journal = out.decode(errors="replace")
            assert done, journal[-3000:]
            assert proc.returncode == 0, journal[-3000:]
            docs = _docs(collector)

    kinds = Counter(str(d.get("kind")) for d in docs)
    expected = {
        "kpi",
        "stop",
        "telemetry",
        "health",
        "status",
        "config",
        "key",
        "contract",
        "contract_alert",
        "contract_period",
    }
    assert expected <= set(kinds), kinds
    failures: dict[str, list[str]] = {}
    for doc in docs:
        try:
            validate(doc)
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            failures.setdefault(str(doc.get("kind")), []).append(f"{path}: {exc.message}")
    summary = {k: f"{len(v)}/{kinds[k]}: {v[0]}" for k, v in failures.items()}
    assert not failures, summary
    # Nothing published that the schemas do not describe (additionalProperties would
    # let an undeclared field through silently).
    undeclared: dict[str, set[str]] = {}
    for doc in docs:
        declared = _declared(str(doc["kind"]))
        if declared is not None and isinstance(doc.get("data"), dict):
            extra = set(doc["data"]) - declared
            if extra:
                undeclared.setdefault(str(doc["kind"]), set()).update(extra)
    assert not undeclared, undeclared

    # Revisions and both record states went through validation, not just one of them.
    kpi = [d["data"] for d in docs if d["kind"] == "kpi"]
    assert any(r["final"] for r in kpi)
    assert any(not r["final"] for r in kpi)
    assert any(r["window"].startswith("contract:") for r in kpi)
    stops = [d["data"] for d in docs if d["kind"] == "stop"]
    assert any(s["end"] is None for s in stops)
    assert any(s["end"] is not None for s in stops)

    # One story: the breakdown carries the interval's code and name, the idle is a
    # micro-stop without a code, and the KPI records book the breakdown under code 17.
    ended = {s["event_id"]: s for s in stops if s["end"] is not None}
    story = sorted((s["start"], s["category"], s["code"], s["fault_name"]) for s in ended.values())
    assert [row[1:] for row in story] == [
        ("micro", None, None),
        ("breakdown", 17, "Hydraulic pressure low"),
    ], story
    assert all(s["category"] in ("pending", "breakdown") for s in stops if s["end"] is None)
    hour = [d for d in docs if d["kind"] == "kpi" and d["data"]["window_kind"] == "hour"]
    assert "17" in hour[-1]["data"]["downtime_by_code"]
    # Published in order, a window's downtime and stop counts never go back.
    by_window: dict[str, list[dict[str, Any]]] = {}
    for doc in sorted((d for d in docs if d["kind"] == "kpi"), key=lambda d: d["seq"]):
        by_window.setdefault(doc["data"]["window"], []).append(doc["data"])
    for window, recs in by_window.items():
        for before, after in itertools.pairwise(recs):
            assert after["downtime_total_s"] >= before["downtime_total_s"], (window, before, after)
            assert after["stops"] >= before["stops"], (window, before, after)
