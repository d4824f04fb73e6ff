"""Telemetry end to end over a real Mosquitto: engine -> SQLite outbox -> uplink -> subscriber."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.buffer import Buffer, Priority, StorageConfig
from edge_agent.model import Quality, Reading
from edge_agent.telemetry import PublishMode, PublishPolicy, TelemetryEngine
from edge_agent.uplink import MqttConfig, Uplink
from tests.plugins.broker import Mosquitto, MqttCollector

pytestmark = pytest.mark.integration

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "telemetry.schema.json"
AGENT = "gw1"
T0 = 1_764_190_800.0
POLLS = 10
WAIT_S = 15.0


def readings(poll: int) -> list[list[Reading]]:
    """One poll of two devices: a ramp, a flat value, a bad alarm word and vibration."""
    ts = T0 + poll + 0.25
    press = [
        Reading(device="press1", tag="ramp", value=poll * 1.5, ts=ts, mono=ts),
        Reading(device="press1", tag="flat", value=42, ts=ts, mono=ts),
        Reading(
            device="press1",
            tag="alarm",
            value=None if poll == 3 else poll,
            ts=ts,
            mono=ts,
            quality=Quality.BAD if poll == 3 else Quality.GOOD,
            reason="timeout" if poll == 3 else "",
        ),
        Reading(device="press1", tag="vib", value=math.sin(poll), ts=ts, mono=ts),
    ]
    oven = [Reading(device="oven", tag="temp", value=200.0 + poll, ts=ts, mono=ts)]
    return [press, oven]


async def test_telemetry_reaches_subscriber(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Every engine message arrives once, in an envelope valid against the schema, intact."""
    policies = {
        ("press1", "ramp"): PublishPolicy(mode=PublishMode.EVERY),
        ("press1", "flat"): PublishPolicy(mode=PublishMode.CHANGE, heartbeat_s=5.0),
        ("press1", "alarm"): PublishPolicy(mode=PublishMode.CHANGE),
        ("press1", "vib"): PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=5.0),
        ("oven", "temp"): PublishPolicy(mode=PublishMode.EVERY),
    }
    units = {"press1": {"ramp": "mm", "vib": "g", "spare": "V"}, "oven": {"temp": "°C"}}
    engine = TelemetryEngine(policies, publish_interval_s=1.0, units=units)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    buffer = Buffer(StorageConfig(path=tmp_path / "buffer.db"), AGENT)
    await buffer.open()
    uplink = Uplink(MqttConfig(host=mosquitto.host, port=mosquitto.port), buffer, AGENT, "site1")
    sent: list[dict[str, Any]] = []
    with MqttCollector(mosquitto.host, mosquitto.port, "#") as collector:
        task = asyncio.create_task(uplink.run())
        try:
            messages = []
            for poll in range(POLLS):
                for batch in readings(poll):
                    engine.ingest(batch)
                messages += engine.due(T0 + poll + 0.5)
            messages += engine.flush(T0 + POLLS)
            for message in messages:
                topic = uplink.topics.telemetry(device=message.device)
                await buffer.publish("telemetry", topic, message.data, priority=Priority.LOW)
                sent.append(message.data)

            def all_arrived(received: list[Any]) -> bool:
                kinds = [r.json().get("kind") for r in received if not r.retain]
                return kinds.count("telemetry") >= len(sent)

            assert await asyncio.to_thread(collector.wait_for, all_arrived, WAIT_S)
        finally:
            await uplink.stop()
            await asyncio.wait_for(task, WAIT_S)
            await buffer.close()
    got = [r.json() for r in collector.snapshot() if r.json().get("kind") == "telemetry"]
    for envelope in got:
        validator.validate(envelope)
        assert envelope["agent"] == AGENT
    assert [e["data"] for e in sorted(got, key=lambda e: e["seq"])] == sent
    press = [e["data"] for e in got if e["data"]["device"] == "press1"]
    ramp = [value for _ms, value, _issue in _samples(press, "ramp")]
    assert ramp == [p * 1.5 for p in range(POLLS)]
    flat = [ms for ms, _value, _issue in _samples(press, "flat")]
    assert sorted(flat) == [round((T0 + p + 0.25) * 1000) for p in (0, 5)]
    alarm = [(value, issue) for _ms, value, issue in _samples(press, "alarm")]
    assert alarm == [(p, None) for p in range(3)] + [(None, ["bad", "timeout"])] + [
        (p, None) for p in range(4, POLLS)
    ]
    # Units of the published tags, in each device's first message only.
    by_seq = [e["data"] for e in sorted(got, key=lambda e: e["seq"])]
    for device, first in (("press1", {"ramp": "mm", "vib": "g"}), ("oven", {"temp": "°C"})):
        units = [d.get("units") for d in by_seq if d["device"] == device]
        assert units == [first] + [None] * (len(units) - 1)
    windows = [w for d in press for w in d.get("aggregates", {}).get("vib", [])]
    assert [(w["start"], w["count"]) for w in windows] == [(T0, 5), (T0 + 5, 5)]
    assert windows[0]["max"] == pytest.approx(max(math.sin(p) for p in range(5)))


def _samples(datas: list[dict[str, Any]], tag: str) -> list[tuple[int, Any, Any]]:
    """(absolute ms, value, issue or None) of one tag across messages, in order."""
    return [
        (d["t0"] * 1000 + snap[0], snap[1][tag], snap[2].get(tag) if len(snap) > 2 else None)
        for d in datas
        for snap in d.get("samples", [])
        if tag in snap[1]
    ]
