"""End-to-end: bundled Modbus simulator → agent process → real Mosquitto → subscriber.

The ``e2e`` scenario runs, faults with code 42 for 20 simulated seconds, and
runs again. Played 10x faster than real time, the fault lasts 2 s of wall
time; the agent polls every 100 ms. The agent runs as a real child process
(``python -m edge_agent run``) and is stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from simulators.host import SimulatorHost
from simulators.truth import read_truth
from tests.integration.sim_config import sim_machine_config
from tests.plugins.broker import Mosquitto, MqttCollector, Received

pytestmark = pytest.mark.integration

POLL_S = 0.1
SPEED = 10.0

KPI = """
## The simulator runs 10x faster: 1 s ideal cycle = 0.1 s real; 120 s threshold = 12 s.
ideal_cycle_time_s = 0.1
micro_stop_threshold_s = 1.0
max_gap_s = 1.0

[[machines.press.kpi.shifts]]
name = "day"
start = "06:00"
end = "18:00"

[[machines.press.kpi.shifts]]
name = "night"
start = "18:00"
end = "06:00"
"""


def _ended_stop(messages: list[Received]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        doc = m.json() if m.payload.startswith(b"{") else {}
        if doc.get("kind") == "stop" and doc["data"].get("end") is not None:
            out.append(doc["data"])
    return out


async def test_fault_downtime_reaches_the_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A 20 s simulated fault arrives as a breakdown lasting the true time, within one poll."""
    truth_path = tmp_path / "truth.jsonl"
    state = tmp_path / "state"
    async with SimulatorHost(
        "e2e", speed=SPEED, seed=1, modbus_tcp=("127.0.0.1", 0), truth_path=truth_path, tick_s=0.01
    ) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(
            sim_machine_config(
                agent_id="e2e-gw",
                machine="press",
                state=state,
                mqtt_port=mosquitto.port,
                modbus_port=sim.modbus_port,
                poll_ms=int(POLL_S * 1000),
                windows='["hour"]',
                allowed_lateness_s=2.0,
                kpi=KPI,
            )
        )
        with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as collector:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                got_stop = False
                for _ in range(40):  # bounded: 40 x 1 s, and stop early if the agent died
                    got_stop = await asyncio.to_thread(
                        collector.wait_for, lambda ms: bool(_ended_stop(ms)), 1.0
                    )
                    if got_stop or proc.poll() is not None:
                        break
                # Let one more report interval go out so the hour record includes the whole stop.
                await asyncio.sleep(2.5)
            finally:
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=15)
            assert got_stop, out.decode(errors="replace")[-3000:]
            assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
            messages = collector.snapshot()

    fault = [
        r
        for r in read_truth(truth_path)
        if r.get("type") == "interval" and r.get("fault_code") == 42
    ]
    assert len(fault) == 1
    truth_s = fault[0]["end_ts"] - fault[0]["start_ts"]
    assert truth_s == pytest.approx(20.0 / SPEED, abs=0.05)

    stop = _ended_stop(messages)[0]
    assert stop["category"] == "breakdown"
    assert stop["code"] == 42
    # Each edge is seen at the next poll: the duration is within one poll interval of the truth.
    assert abs(stop["duration_s"] - truth_s) <= POLL_S + 0.05

    # The journal tells the same story in one line per transition (docs/logs.md).
    journal = out.decode(errors="replace")
    assert journal.count("Device connected device=plc ") == 1, journal[-3000:]
    assert journal.count("Machine stopped machine=press ") == 1, journal[-3000:]
    ended = [ln for ln in journal.splitlines() if "Machine running again machine=press " in ln]
    assert len(ended) == 1, journal[-3000:]
    assert "class=breakdown fault=42" in ended[0]

    kpi = [
        m.json()["data"]
        for m in messages
        if m.payload.startswith(b"{") and m.json().get("kind") == "kpi"
    ]
    assert kpi, "no KPI record published"
    # The latest record of each hour window; the fault may straddle an hour boundary.
    latest: dict[str, dict[str, Any]] = {}
    for rec in kpi:
        latest[rec["window"]] = rec
    breakdown = sum(r["downtime_breakdown_s"] for r in latest.values())
    assert abs(breakdown - truth_s) <= POLL_S + 0.05
    assert sum(r["failures"] for r in latest.values()) == 1
    assert all(
        r["downtime_by_code"].get("42", 0) == r["downtime_breakdown_s"] for r in latest.values()
    )
