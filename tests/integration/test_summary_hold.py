"""Summaries never vanish: a tiny disk budget, a broker outage, recovery, a clean stop.

Issue 22 items 0 and 7, end to end. A real agent process polls six machines on a
bundled Modbus simulator (frequent micro-stops, played 10x faster) and reports
every second into a 1 MiB budget while Mosquitto is stopped: the outbox fills
with KPI records that are never evicted, new summaries are held in memory. The
broker returns, the agent runs on for a while, then gets SIGTERM.

Asserted, at the subscriber and against the agent's own accounting:

* records created after the broker returned arrive at the reporting rate (the
  bug: the held summaries formed one batch that never fit, so new records piled
  up behind it and 42 of ~360 arrived);
* the records made at the stop arrive before the process exits (item 7: a clean
  stop drains the outbox within the stop timeout), so the outbox is empty;
* every KPI record and stop event the agent created is stored, replaced in memory
  by a newer version of the same record (``superseded``) or counted as dropped,
  and every stored one reached the subscriber or was evicted as superseded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from simulators.host import SimulatorHost
from tests.integration.envelope_kit import envelope_time, envelopes
from tests.plugins.broker import Mosquitto, MosquittoFactory, MqttCollector, Received

pytestmark = pytest.mark.integration

SPEED = 10.0
MACHINES = ("m1", "m2", "m3")
# Four machines per PLC: four times the records from one simulator.
AGENT_MACHINES = tuple(f"{m}{s}" for m in MACHINES for s in "abcd")
WINDOWS = 3  # hour, day, month: the default [reporting] windows (24/7 has no shift)

SCENARIO = """
[scenario]
name = "hold"
description = "Three machines with frequent micro-stops"
{machines}
"""

SCENARIO_MACHINE = """
[machines.{name}]
unit_id = {unit}
ideal_cycle_s = 1.0
cycle_jitter = 0.05
scrap_rate = 0.02

[machines.{name}.stochastic]
microstops_per_h = 300
microstop_mean_s = 6
"""

AGENT = """
[agent]
id = "hold-gw"
site = "lab"
state_dir = "{state}"
log_level = "info"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[storage]
max_mb = 1

[reporting]
interval_s = 1.0
allowed_lateness_s = 1.0
"""

DEVICE = """
[devices.{name}]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{port}"
unit_id = {unit}
interval_ms = 200
addressing = "zero"
timeout_ms = 500

[devices.{name}.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.{name}.tags.fault_code]
table = "holding"
address = 2
type = "uint16"

[devices.{name}.tags.good]
table = "holding"
address = 10
type = "uint32"

[devices.{name}.tags.total]
table = "holding"
address = 14
type = "uint32"
"""

MACHINE = """
[machines.{name}]
run = "{device}.running"
fault = "{device}.fault_code"
good = "{device}.good"
total = "{device}.total"

[machines.{name}.kpi]
ideal_cycle_time_s = 0.1
micro_stop_threshold_s = 1.0
max_gap_s = 1.0
"""


def write_files(tmp: Path, mqtt_port: int, modbus_port: int) -> Path:
    """The agent's configuration: three PLCs, two machines on each."""
    text = AGENT.format(state=tmp / "state", mqtt_port=mqtt_port)
    for unit, name in enumerate(MACHINES, start=1):
        text += DEVICE.format(name=f"plc_{name}", port=modbus_port, unit=unit)
    for name in AGENT_MACHINES:
        text += MACHINE.format(name=name, device=f"plc_{name[:-1]}")
    config = tmp / "agent.toml"
    config.write_text(text)
    return config


def scenario_file(tmp: Path) -> Path:
    """The simulator's scenario (three machines on units 1-3)."""
    body = "".join(
        SCENARIO_MACHINE.format(name=name.upper(), unit=unit)
        for unit, name in enumerate(MACHINES, start=1)
    )
    path = tmp / "hold.toml"
    path.write_text(SCENARIO.format(machines=body))
    return path


def wait_status(path: Path, predicate: Any, timeout: float) -> dict[str, Any]:
    """Bounded wait until status.json satisfies ``predicate``; returns the last snapshot."""
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            snap = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            snap = {}
        if snap and predicate(snap):
            return snap
        time.sleep(0.2)
    return snap


async def run_hold(
    tmp_path: Path, broker: Mosquitto, *, outage_s: float, up_s: float
) -> tuple[dict[str, Any], list[Received], str, dict[str, float]]:
    """Run the agent through the outage and a clean stop; return status, messages, log, times."""
    async with SimulatorHost(
        str(scenario_file(tmp_path)), speed=SPEED, seed=5, modbus_tcp=("127.0.0.1", 0), tick_s=0.02
    ) as sim:
        config = write_files(tmp_path, broker.port, sim.modbus_port)
        status = tmp_path / "state" / "status.json"
        log_path = tmp_path / "agent.log"
        coll = MqttCollector(
            broker.host, broker.port, "edge/#", client_id="hold-sub", clean=False
        ).start()
        times: dict[str, float] = {}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                assert await asyncio.to_thread(
                    coll.wait_for, lambda ms: len(envelopes(ms, "kpi")) >= 2 * WINDOWS, 20
                ), log_path.read_text()[-3000:]
                await asyncio.to_thread(broker.stop)
                times["down"] = time.time()
                await asyncio.sleep(outage_s)
                await asyncio.to_thread(broker.start)
                times["up"] = time.time()
                await asyncio.sleep(up_s)
                times["term"] = time.time()
                proc.send_signal(signal.SIGTERM)
                rc = await asyncio.to_thread(proc.wait, 20)
                times["exit"] = time.time()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        text = log_path.read_text(errors="replace")
        assert rc == 0, text[-3000:]
        # The stop ends with the retained "offline" status, after the drain.
        assert await asyncio.to_thread(
            coll.wait_for,
            lambda ms: any(m.topic.endswith("/status") and b'"offline"' in m.payload for m in ms),
            10,
        ), text[-3000:]
        await asyncio.sleep(1.0)
        messages = coll.snapshot()
        coll.stop()
    final = wait_status(status, lambda s: "stopped_at" in s, 5)
    return final, messages, text, times


def check_hold(
    final: dict[str, Any], messages: list[Received], text: str, times: dict[str, float]
) -> None:
    """The assertions shared by the short and the soak variant (see module docstring)."""
    tail = text[-4000:]
    # The scenario did what it is for: the budget was full of summaries (so-far records
    # replaced by newer ones were evicted, or the outbox refused and summaries were held).
    evicted = final["buffer"]["dropped"].get("superseded:kpi", 0)
    assert evicted > 0 or "Outbox full, keeping messages in memory" in text, tail

    kpis = envelopes(messages, "kpi")
    stops = envelopes(messages, "stop")

    # Records created after the broker returned arrive at the reporting rate: one per
    # machine, window and second, once the backlog of the outage went out.
    settle = times["up"] + 10.0
    span = times["term"] - settle
    assert span >= 4.0
    per_machine: dict[str, int] = defaultdict(int)
    for doc in kpis.values():
        if settle <= envelope_time(doc) <= times["term"]:
            per_machine[doc["data"]["machine"]] += 1
    expected = int(span) * WINDOWS
    short = {m: n for m in AGENT_MACHINES if (n := per_machine.get(m, 0)) < expected * 0.7}
    assert not short, f"records after recovery {dict(per_machine)}, expected ~{expected} each"

    # Item 7: the records made at the stop went out before the process exited.
    for machine in AGENT_MACHINES:
        last = max(
            (envelope_time(d) for d in kpis.values() if d["data"]["machine"] == machine),
            default=0.0,
        )
        assert last >= times["term"], f"{machine}: last {times['term'] - last:.1f} s before stop"
    assert final["buffer"]["backlog"] == 0, final["buffer"]

    # Accounting: created = stored + superseded + dropped (nothing left in memory), and
    # every stored row reached the subscriber or was evicted as superseded.
    outgoing = final["outgoing"]
    for kind in ("kpi", "stop"):
        created = outgoing["created"].get(kind, 0)
        stored = outgoing["stored"].get(kind, 0)
        superseded = outgoing["superseded"].get(kind, 0)
        dropped = outgoing["dropped"].get(kind, 0)
        assert outgoing["held"].get(kind, 0) == 0, outgoing
        assert created == stored + superseded + dropped, (kind, outgoing)
        assert created > 0, (kind, outgoing)
    assert outgoing["dropped"].get("stop", 0) == 0, outgoing
    assert outgoing["dropped"].get("kpi", 0) == 0, outgoing
    assert final["buffer"]["dropped"].get("outbox:kpi", 0) == 0, final["buffer"]["dropped"]
    assert len(kpis) + evicted >= outgoing["stored"]["kpi"], (len(kpis), evicted, outgoing)
    assert len(stops) >= outgoing["stored"]["stop"], (len(stops), outgoing)
    assert outgoing["stored"]["stop"] > 0


async def test_summaries_survive_a_full_budget_and_a_clean_stop(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """30 s outage into a 1 MiB budget, 16 s of recovery, SIGTERM: every summary accounted for."""
    broker = mosquitto_factory(persistence=True)
    final, messages, text, times = await run_hold(tmp_path, broker, outage_s=30, up_s=16)
    check_hold(final, messages, text, times)


@pytest.mark.soak
@pytest.mark.timeout(900)
async def test_summaries_survive_a_long_outage(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    """The harness's timings: 150 s outage, 60 s of recovery, SIGTERM."""
    broker = mosquitto_factory(persistence=True)
    final, messages, text, times = await run_hold(tmp_path, broker, outage_s=150, up_s=60)
    check_hold(final, messages, text, times)
