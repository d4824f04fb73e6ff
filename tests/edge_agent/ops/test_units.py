"""Engineering units travel: telemetry metadata, status.json and the status screen.

The runtime's own pieces (config -> dispatcher -> telemetry pump -> outbox, and the
status writer), its real output validated against schemas/telemetry.schema.json as
the uplink sends it (the envelope built from the outbox row).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_agent.config import load_config
from edge_agent.model import Reading
from edge_agent.runtime import Runtime
from edge_agent.status_view import render
from edge_agent.telemetry.batcher import UNITS_EVERY_S
from edge_agent.uplink.payload import envelope

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_764_190_800.0

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[devices.oven]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"
publish = "every"

[devices.oven.tags.temp]
table = "holding"
address = 0
type = "float32"
unit = "°C"

[devices.oven.tags.door]
table = "coil"
address = 0
type = "bool"

[devices.oven.tags.power]
table = "holding"
address = 4
type = "float32"
unit = "kW"
publish = "none"
"""


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    runtime = Runtime(load_config(path), install_signals=False)
    (tmp_path / "state").mkdir()
    await runtime.buffer.open()
    yield runtime
    await runtime.buffer.close()


def poll(t: float) -> list[Reading]:
    return [
        Reading("oven", "temp", 180.5, t, t - T0),
        Reading("oven", "door", False, t, t - T0),
        Reading("oven", "power", 3.5, t, t - T0),
    ]


async def published(rt: Runtime) -> list[dict[str, Any]]:
    """Telemetry envelopes as the uplink would send them, validated against the schema."""
    schema = json.loads((ROOT / "schemas" / "telemetry.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    rows = await rt.buffer.fetch_outbox(after=0, limit=100)
    out = []
    for row in rows:
        if row.kind == "telemetry":
            doc = json.loads(envelope(row, "gw", rt.buffer.epoch))
            validator.validate(doc)
            out.append(doc["data"])
    return out


async def test_units_in_the_first_message_then_hourly_in_status_and_screen(rt: Runtime) -> None:
    for t in (T0, T0 + 1, T0 + 2, T0 + UNITS_EVERY_S + 5):
        await rt.dispatcher.handle(poll(t))
        await rt.telemetry.round(t + 0.5)
    datas = await published(rt)
    assert len(datas) == 4
    # Only published tags' units: power is not published, door has no unit.
    assert [d.get("units") for d in datas] == [{"temp": "°C"}, None, None, {"temp": "°C"}]
    doc = json.loads("".join(rt.status.parts()))
    tags = doc["devices"]["oven"]["tags"]
    assert (tags["temp"]["unit"], tags["power"]["unit"]) == ("°C", "kW")
    assert "unit" not in tags["door"]
    screen = render(doc, now=T0 + UNITS_EVERY_S + 6)
    (line,) = [x for x in screen.splitlines() if "temp" in x and "oven" in x]
    assert line.split()[:4] == ["oven", "temp", "180.5", "°C"]
    assert "UNIT" in screen


async def test_a_reload_sends_the_units_again(rt: Runtime, tmp_path: Path) -> None:
    from edge_agent.outgoing.telemetry import engine_for

    await rt.dispatcher.handle(poll(T0))
    await rt.telemetry.round(T0 + 0.5)
    changed = (tmp_path / "agent.toml").read_text().replace('unit = "°C"', 'unit = "K"')
    (tmp_path / "agent.toml").write_text(changed)
    await rt.telemetry.replace(engine_for(load_config(tmp_path / "agent.toml")))
    await rt.dispatcher.handle(poll(T0 + 1))
    await rt.telemetry.round(T0 + 1.5)
    assert [d.get("units") for d in await published(rt)] == [{"temp": "°C"}, {"temp": "K"}]
