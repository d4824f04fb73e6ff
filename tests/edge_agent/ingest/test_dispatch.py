"""The dispatcher hands each batch to buffer, tag state, telemetry and machines (real parts)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge_agent.columns import Column, ColumnPoll
from edge_agent.config import load_config
from edge_agent.model import CommsEvent, CommsState, Reading
from edge_agent.ops.clock import ClockWatch
from edge_agent.runtime import Runtime

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[reporting]
windows = ["day"]

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1"
unit_id = 1
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"
publish = "every"

[devices.a.tags.count]
table = "holding"
address = 10
type = "uint32"

[devices.b]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:2"
unit_id = 1
addressing = "zero"

[devices.b.tags.x]
table = "holding"
address = 0

[machines.m]
run = "a.running"
good = "a.count"
total = "a.count"

[machines.m.kpi]
ideal_cycle_time_s = 2.0
"""

T0 = 1_764_151_200.0  # 2025-11-26T10:00:00Z


def poll(t: float, running: bool, count: int) -> list[Reading]:
    return [Reading("a", "running", running, t, t - T0), Reading("a", "count", count, t, t - T0)]


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime with its buffer open and its machines built; nothing started."""
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state"))
    runtime = Runtime(load_config(path), install_signals=False, clock=ClockWatch(lambda: True))
    (tmp_path / "state").mkdir()
    await runtime.buffer.open()
    await runtime.machines.start(runtime.config.machines)
    yield runtime
    await runtime.buffer.close()


async def test_a_batch_reaches_buffer_tag_state_telemetry_and_its_machine(rt: Runtime) -> None:
    """One poll of a: stored, latest values updated, queued for telemetry, sampled by m."""
    await rt.dispatcher.handle(poll(T0, True, 10))
    await rt.buffer.flush()
    assert rt.buffer.stats()["written"]["readings"] == 2
    assert rt.tags.latest["a"]["count"].value == 10
    engine = rt.telemetry.engine
    assert engine is not None
    assert engine.stats.ingested == 2
    assert rt.machines["m"].state.value == "running"
    assert rt.machines["m"].since == T0


async def test_a_stop_becomes_a_stop_event_in_the_outbox_at_once(rt: Runtime) -> None:
    """The machine stopping is published without waiting for the reporting interval."""
    await rt.dispatcher.handle(poll(T0, True, 10))
    await rt.dispatcher.handle(poll(T0 + 1, False, 10))
    rows = await rt.buffer.fetch_outbox(after=0, limit=10)
    (stop,) = [json.loads(r.data) for r in rows if r.kind == "stop"]
    assert stop["machine"] == "m"
    assert stop["end"] is None
    assert rt.machines["m"].state.value == "stopped"


async def test_a_device_no_machine_reads_touches_no_machine(rt: Runtime) -> None:
    """A batch of b (no machine reads it) is stored and viewed only."""
    await rt.dispatcher.handle([Reading("b", "x", 1, T0, 0.0)])
    assert rt.tags.latest["b"]["x"].value == 1
    assert rt.machines["m"].since is None


async def test_comms_events_update_the_view_and_the_catalogue(rt: Runtime) -> None:
    """Down then up: the device's comms state follows, the catalogue counts one outage."""
    down = CommsEvent(device="a", state=CommsState.DOWN, ts=T0, mono=0.0, reason="timeout")
    await rt.dispatcher.handle(down)
    assert rt.tags.comms["a"] is CommsState.DOWN
    await rt.dispatcher.handle(CommsEvent(device="a", state=CommsState.UP, ts=T0, mono=1.0))
    assert rt.tags.comms["a"] is CommsState.UP
    assert rt.events.snapshot()["counters"]["device_down"] == 1
    assert rt.tags.devices_up() == 1


async def test_a_column_poll_is_handed_on_like_its_readings(rt: Runtime) -> None:
    """The same poll as columns: stored, viewed, published and sampled as its readings are."""
    await rt.dispatcher.handle(ColumnPoll("a", [Column(("running", "count"), [True, 10], T0, 0.0)]))
    await rt.buffer.flush()
    assert rt.buffer.stats()["written"]["readings"] == 2
    assert rt.tags.latest["a"]["count"] == Reading("a", "count", 10, T0, 0.0)
    engine = rt.telemetry.engine
    assert engine is not None
    assert engine.stats.ingested == 2
    (message,) = engine.due(T0 + 0.5)
    assert message.data["samples"] == [[0, {"running": True}]]
    assert rt.machines["m"].state.value == "running"
    assert rt.machines["m"].since == T0
