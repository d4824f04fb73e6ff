"""A contract month compressed in time, end to end: simulator, agent process, Mosquitto.

The bundled simulator plays one press in real time (the ``steady`` scenario; the test
scripts its breakdowns). The agent runs as a child process with a contract whose
period is 30 wall seconds, one "day" per second: SLA availability >= 95 % (1.5 s of
provider downtime allowed) with a minimum of 85 % (4.5 s), and response time max <=
4 s to acknowledgement. The script, from the period's start S:

* S+5: fault 17 for 1 s. The budget left (0.5 s) is below the pace (about 4 s):
  **at risk**. It is acknowledged at S+7 over MQTT, after a command on another
  agent's topic and a malformed one (both rejected, nothing changed);
* S+12: fault 17 for 1 s, never answered: the 95 % target is **breached** when the
  provider downtime passes 1.5 s, and the response bound passes at start + 4 s;
* S+18: fault 17 for 0.8 s, acknowledged with ``edge-agent ack`` on the gateway;
* S+30: the period ends; 1 s later its record is final.

A second test kills the agent with SIGKILL in the middle of a period and restarts it:
the books come back (no alert sent twice), the figures continue with the outage as
unknown time. Every wait is bounded; processes are stopped by PID; loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.kpi.timeutil import parse_instant
from simulators.host import SimulatorHost
from tests.edge_agent.uplink.schemas import validate
from tests.integration.sim_config import agent_section, machine_section, modbus_device
from tests.integration.truth_kit import spawn_agent, stop_agent, unique_docs, wait_until_running
from tests.plugins.broker import Mosquitto, MqttCollector, Received

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

AGENT = "contract-gw"
LEAD_S = 6.0
"""The period starts this long after the configuration is written."""
INTERVAL_S = 1.0
"""The reporting interval (agent_section): how late a round may see a change."""
SLACK_S = 1.0
"""Scheduling slack on a loaded test machine."""

KPI = """ideal_cycle_time_s = 2.0
micro_stop_threshold_s = 0.3
max_gap_s = 1.0
timezone = "UTC"

## Planned around the clock, like the contract's service hours.
[[machines.press.kpi.shifts]]
start = "00:00"
end = "00:00"
"""


def contract_section(start: float, period_s: float, bound_s: float) -> str:
    """The contract: one explicit period of ``period_s`` wall seconds from ``start``."""

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    return f"""
[contracts.month]
machines = ["press"]
timezone = "UTC"
calendar = "24/7"
period = "dates"
start = {iso(start)}
end = {iso(start + period_s)}

[contracts.month.terms.availability]
kpi = "sla_availability"
target = 0.95
minimum = 0.85

[contracts.month.terms.response]
kpi = "response_time_s"
statistic = "max"
to = "acknowledged"
target = {bound_s:g}
"""


def write_config(
    tmp_path: Path, mqtt_port: int, modbus_port: int, period_s: float, bound_s: float = 4.0
) -> float:
    """The agent's file; returns the period's start (a whole second)."""
    start = float(int(time.time() + LEAD_S))
    text = agent_section(
        agent_id=AGENT,
        state=tmp_path / "state",
        mqtt_port=mqtt_port,
        windows="[]",
        allowed_lateness_s=1.0,
        status_interval_s=0.5,
    )
    text += modbus_device("plc", modbus_port=modbus_port, poll_ms=100)
    text += machine_section("press", device="plc", kpi=KPI)
    text += contract_section(start, period_s, bound_s)
    (tmp_path / "agent.toml").write_text(text)
    return start


def docs_of(collector: MqttCollector, kind: str) -> list[dict[str, Any]]:
    """The data of every received message of ``kind`` (de-duplicated on seq)."""
    return [d["data"] for d in unique_docs(collector.snapshot()) if d.get("kind") == kind]


async def until(
    collector: MqttCollector,
    predicate: Callable[[list[Received]], bool],
    proc: subprocess.Popen[bytes],
    timeout: float,
    log: Path,
) -> None:
    """Wait (bounded) for ``predicate``; fail with the stops seen and the agent's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if await asyncio.to_thread(collector.wait_for, predicate, 0.5):
            return
    stops = [d["data"] for d in unique_docs(collector.snapshot()) if d.get("kind") == "stop"]
    pytest.fail(f"condition not met (exit {proc.poll()}) stops={stops}:\n{log.read_text()[-3000:]}")


async def at(wall: float) -> None:
    """Sleep until wall-clock instant ``wall``."""
    await asyncio.sleep(max(0.0, wall - time.time()))


def publish(port: int, topic: str, payload: bytes) -> None:
    """One QoS 1 publish from a separate client (the service desk's)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="service-desk")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def instant(value: float | str) -> float:
    """An instant of a message in epoch seconds (stop events: seconds or ISO text)."""
    return parse_instant(value) / 1000 if isinstance(value, str) else float(value)


def started_stops(collector: MqttCollector) -> list[dict[str, Any]]:
    """Every stop event seen, latest update per event_id, in start order."""
    latest: dict[str, dict[str, Any]] = {}
    for s in docs_of(collector, "stop"):
        latest[s["event_id"]] = s
    return sorted(latest.values(), key=lambda s: instant(s["start"]))


def breakdowns(collector: MqttCollector, n: int) -> Callable[[list[Received]], bool]:
    """At least ``n`` stop events seen as breakdowns."""

    def done(_ms: list[Received]) -> bool:
        return sum(s["category"] == "breakdown" for s in started_stops(collector)) >= n

    return done


async def test_a_compressed_month(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """At risk before the breach, breach and crossing at the right time, final record = sums."""
    log = tmp_path / "agent.log"
    async with SimulatorHost(
        "steady", speed=1.0, seed=3, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
    ) as sim:
        start = write_config(tmp_path, mosquitto.port, sim.modbus_port, period_s=30.0)
        press = sim.machine("M1")
        with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as collector:
            proc = spawn_agent(tmp_path / "agent.toml", log)
            try:
                await wait_until_running(
                    proc, tmp_path / "state", ["press"], deadline=start - 1, log_path=log
                )
                await at(start + 5)
                press.force_fault(17, 1.0)
                await until(collector, breakdowns(collector, 1), proc, 5, log)
                first = started_stops(collector)[-1]["event_id"]
                await at(start + 7)
                command = json.dumps({"command": "ack", "event_id": first}).encode()
                await asyncio.to_thread(
                    publish, mosquitto.port, "edge/e2e/other-gw/command", command
                )
                await asyncio.to_thread(
                    publish, mosquitto.port, f"edge/e2e/{AGENT}/command", b"ack it please"
                )
                await asyncio.to_thread(
                    publish, mosquitto.port, f"edge/e2e/{AGENT}/command", command
                )
                await at(start + 12)
                press.force_fault(17, 1.0)
                await at(start + 18)
                press.force_fault(17, 0.8)
                await until(collector, breakdowns(collector, 3), proc, 5, log)
                third = started_stops(collector)[-1]["event_id"]
                ack = await asyncio.to_thread(
                    subprocess.run,
                    [
                        sys.executable,
                        "-m",
                        "edge_agent",
                        "ack",
                        third,
                        "-c",
                        str(tmp_path / "agent.toml"),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                assert ack.returncode == 0, ack.stderr
                await until(
                    collector,
                    lambda _ms: bool(docs_of(collector, "contract_period")),
                    proc,
                    30 + 10 - (time.time() - start),
                    log,
                )
            finally:
                assert stop_agent(proc) == 0, log.read_text()[-3000:]
            received = collector.snapshot()
        with MqttCollector(
            "127.0.0.1", mosquitto.port, f"edge/e2e/{AGENT}/contract/month/status"
        ) as late:
            assert late.wait_for(bool, 5), "the status is retained"
            assert late.snapshot()[0].retain

    journal = log.read_text()
    for doc in unique_docs(received):
        if doc["kind"] in ("contract", "contract_alert", "contract_period"):
            validate(doc)
    stops = started_stops(collector)
    assert [s["category"] for s in stops] == ["breakdown"] * 3, stops
    one, two, three = stops
    # MQTT: the valid command acknowledged stop 1; the other two changed nothing.
    assert parse_instant(one["acknowledged_at"]) / 1000 == pytest.approx(start + 7, abs=SLACK_S)
    assert two["acknowledged_at"] is None
    assert three["acknowledged_at"] is not None  # edge-agent ack
    assert journal.count("Command rejected, nothing changed") == 1, journal[-3000:]
    assert "reason='payload is not JSON'" in journal

    alerts = docs_of(collector, "contract_alert")
    sla = [a for a in alerts if a["term"] == "availability" and a["level"] == "target"]
    assert [a["state"] for a in sla] == ["at_risk", "breached"], alerts
    risk_at, breach_at = (parse_instant(a["at"]) / 1000 for a in sla)
    one_start, two_start = (instant(s["start"]) for s in (one, two))
    assert one_start <= risk_at <= one_start + 0.3 + INTERVAL_S + SLACK_S
    # Breached when the provider downtime passes 1.5 s: 1.5 - (stop 1) into stop 2.
    breach = two_start + 1.5 - one["duration_s"]
    assert breach <= breach_at <= breach + INTERVAL_S + SLACK_S
    crossings = [a for a in alerts if a["alert"] == "response_bound_crossed"]
    assert [(c["event_id"], instant(c["at"])) for c in crossings] == [
        (two["event_id"], pytest.approx(two_start + 4, abs=0.001))  # exactly start + bound
    ]

    (period,) = docs_of(collector, "contract_period")
    window = f"contract:month:{period['period']}"
    (kpi,) = [k for k in docs_of(collector, "kpi") if k["window"] == window and k["final"]]
    for key, value in period["components"].items():
        assert kpi[key] == value, key  # the period is the sum of its window's components
    known = kpi["planned_time_s"] - kpi["unknown_time_s"]
    base = known - kpi["downtime_customer_s"]
    term = {t["term"]: t for t in period["terms"]}
    assert term["availability"]["so_far"] == round((base - kpi["downtime_provider_s"]) / base, 6)
    assert kpi["sla_availability"] == term["availability"]["so_far"]
    assert [lv["state"] for lv in term["availability"]["levels"]] == ["missed", "met"]
    assert term["response"]["state"] == "missed"
    assert kpi["planned_time_s"] == 30.0


async def test_kill_and_restart_continue_the_contract(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """SIGKILL mid-period, restart: the same breakdowns, the outage unknown, no alert twice."""
    log = tmp_path / "agent.log"
    async with SimulatorHost(
        "steady", speed=1.0, seed=3, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
    ) as sim:
        start = write_config(tmp_path, mosquitto.port, sim.modbus_port, period_s=120.0, bound_s=6.0)
        press = sim.machine("M1")
        with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as collector:
            proc = spawn_agent(tmp_path / "agent.toml", log)
            try:
                await wait_until_running(
                    proc, tmp_path / "state", ["press"], deadline=start - 1, log_path=log
                )
                await at(start + 3)
                press.force_fault(17, 1.0)
                await until(
                    collector,
                    lambda _ms: any(
                        a["state"] == "at_risk" for a in docs_of(collector, "contract_alert")
                    ),
                    proc,
                    10,
                    log,
                )
                await asyncio.sleep(3 * INTERVAL_S)  # a round saved the books since
                before = docs_of(collector, "contract")[-1]
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                killed_at = time.time()
                await asyncio.sleep(3.0)
                proc = spawn_agent(tmp_path / "agent.toml", log)
                await until(
                    collector,
                    lambda _ms: (
                        docs_of(collector, "contract")[-1]["at"] > before["at"]
                        and parse_instant(docs_of(collector, "contract")[-1]["at"]) / 1000
                        > killed_at + 3
                    ),
                    proc,
                    30,
                    log,
                )
                after = docs_of(collector, "contract")[-1]
            finally:
                assert stop_agent(proc) == 0, log.read_text()[-3000:]

    b, a = before["components"], after["components"]
    assert (a["failures"], a["downtime_provider_s"]) == (b["failures"], b["downtime_provider_s"])
    elapsed = (parse_instant(after["at"]) - parse_instant(before["at"])) / 1000
    assert a["planned_time_s"] - b["planned_time_s"] == pytest.approx(elapsed, abs=0.01)
    assert a["unknown_time_s"] - b["unknown_time_s"] >= 3.0 - SLACK_S  # the outage, at least
    # Books persisted: nothing alerted twice; the unanswered breakdown's bound (6 s) passed
    # around the outage and is alerted once, dated at its start + 6 s.
    alerts = docs_of(collector, "contract_alert")
    ids = [x["alert_id"] for x in alerts]
    assert len(ids) == len(set(ids)), ids
    (stop,) = started_stops(collector)
    crossings = [x for x in alerts if x["alert"] == "response_bound_crossed"]
    assert [(c["event_id"], instant(c["at"])) for c in crossings] == [
        (stop["event_id"], pytest.approx(instant(stop["start"]) + 6, abs=0.001))
    ]
