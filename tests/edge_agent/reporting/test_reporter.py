"""Reporter and machine set on reload: real calculators and buffer, injected clocks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edge_agent.buffer import Buffer, StorageConfig
from edge_agent.config import AgentConfig, load_config
from edge_agent.model import Reading
from edge_agent.outgoing.staging import OutboxStaging
from edge_agent.reporting.machine import MachineSet
from edge_agent.reporting.reporter import FLAG_RECONFIGURED, Reporter
from edge_agent.uplink import TopicTemplates

DAY_START = datetime(2026, 11, 26, tzinfo=timezone.utc).timestamp()
T0 = DAY_START + 10 * 3600.0  # 10:00 UTC

CONFIG = """
[agent]
id = "gw"
site = "lab"
state_dir = "{state}"

[reporting]
windows = ["day"]

[devices.a]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:1502"
unit_id = 1
addressing = "zero"

[devices.a.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.a.tags.count]
table = "holding"
address = 10
type = "uint32"

[machines.m]
run = {run}
good = "a.count"
total = "a.count"

[machines.m.kpi]
ideal_cycle_time_s = {ict}
max_gap_s = 10.0

[[machines.m.kpi.shifts]]
name = "all"
start = "00:00"
end = "00:00"
"""


def config(tmp_path: Path, ict: float = 2.0, run: str = '"a.running"') -> AgentConfig:
    path = tmp_path / "agent.toml"
    path.write_text(CONFIG.format(state=tmp_path / "state", ict=ict, run=run))
    return load_config(path)


def poll(t: float, count: int) -> list[Reading]:
    """One poll of device a at wall time t (monotonic time follows it)."""
    return [
        Reading("a", "running", True, t, t - T0),
        Reading("a", "count", count, t, t - T0),
    ]


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[Buffer]:
    buf = Buffer(StorageConfig(path=tmp_path / "b.db"), "gw")
    await buf.open()
    yield buf
    await buf.close()


async def kpi_rows(buffer: Buffer) -> list[dict[str, Any]]:
    rows = await buffer.fetch_outbox(after=0, limit=1000)
    return [json.loads(r.data) for r in rows if r.kind == "kpi"]


def feed(machines: MachineSet, start: float, seconds: int) -> None:
    for i in range(seconds + 1):
        t = start + i
        machines.feed(machines.by_device["a"], poll(t, int(t - T0) // 2), synced=True)


async def test_a_changed_profile_closes_its_windows_with_the_known_time_counted(
    tmp_path: Path, buffer: Buffer
) -> None:
    """Profile change at reload: the old day record ends final at the reload, known time kept.

    The new calculator reports the rest of the day under its own name, from the reload
    instant, so the two records partition the day.
    """
    old = config(tmp_path, ict=2.0)
    machines = MachineSet(buffer, old.reporting)
    await machines.start(old.machines)
    topics = TopicTemplates.create(site="lab", agent="gw")
    staging = OutboxStaging(buffer, topics)
    now = [T0]
    reporter = Reporter(machines, staging, buffer, clock=lambda: now[0])
    feed(machines, T0, 100)
    at = T0 + 100.5
    new = config(tmp_path, ict=3.0)
    retired = await machines.reload(new.machines, new.reporting, clock=lambda: at)
    assert [lm.config.name for lm in retired.machines] == ["m"]
    await reporter.retire(retired)
    (closed,) = await kpi_rows(buffer)
    assert closed["window"] == "day:2026-11-26"
    assert closed["final"] is True
    assert FLAG_RECONFIGURED in closed["flags"]
    assert closed["running_time_s"] == pytest.approx(100.5, abs=0.01)
    assert closed["unknown_time_s"] == pytest.approx(T0 - DAY_START, abs=0.01)

    feed(machines, T0 + 101, 49)
    now[0] = T0 + 150.0
    await reporter.report()
    rows = await kpi_rows(buffer)
    rest = [r for r in rows if r is not closed and r["window"] != closed["window"]]
    (so_far,) = rest
    assert so_far["window"] == "day:2026-11-26~2026-11-26T10:01:40.500Z"
    assert so_far["final"] is False
    assert so_far["running_time_s"] == pytest.approx(49.0, abs=0.01)
    assert so_far["unknown_time_s"] == pytest.approx(0.5, abs=0.01)  # reload -> first sample


async def test_a_machine_with_its_profile_unchanged_keeps_its_calculator(
    tmp_path: Path, buffer: Buffer
) -> None:
    """A reload that changes only a machine's signals keeps the live calculator and windows."""
    old = config(tmp_path)
    machines = MachineSet(buffer, old.reporting)
    await machines.start(old.machines)
    calc = machines["m"].calc
    feed(machines, T0, 10)
    new = config(tmp_path, run='{ expr = "a.running == true" }')
    assert new.machines["m"] != old.machines["m"]
    retired = await machines.reload(new.machines, new.reporting, clock=lambda: T0 + 11)
    assert retired.machines == []
    assert machines["m"].calc is calc
    assert machines["m"].config is new.machines["m"]
    assert machines["m"].reconfigured_at is None
