"""Sparkplug B end to end: simulator -> agent process -> real Mosquitto -> independent decoder.

The agent runs as a child process (``python -m edge_agent run``) with
``payload = "sparkplug_b"``, polling the bundled Modbus simulator (``steady``
scenario, real clock); a paho subscriber captures ``spBv1.0/#`` and every
payload is decoded with the Tahu proto compiled at test time
(:mod:`tests.plugins.sparkplug`), never with the agent's generated module. Each
test checks the host-side rules over the whole capture (seq +1 mod 256 from
NBIRTH 0, bdSeq pairing, births before data, aliases) besides its own
scenario: connect and restart, device down/up, rebirth request, broker outage
with history, primary host offline/online.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulators.host import SimulatorHost
from tests.plugins.broker import (
    Mosquitto,
    MosquittoFactory,
    MqttCollector,
    Received,
    first_deliveries,
)
from tests.plugins.sparkplug import HostView, Msg, decode, rebirth_command, state_payload

pytestmark = pytest.mark.integration

GROUP = "plant1"
NODE = "spb-gw"
PLC = "plc"
MACHINE_DEVICE = "press-machine"
CONTRACT = "press-sla"
CONTRACT_DEVICE = f"{CONTRACT}-contract"
POLL_MS = 200
WAIT_S = 20.0


def agent_config(state: Path, mqtt_port: int, modbus_port: int, *, primary_host: str = "") -> str:
    """The agent's TOML: one simulated PLC (published tags) and one machine, Sparkplug B."""
    host_line = f'primary_host_id = "{primary_host}"' if primary_host else ""
    return f"""
[agent]
id = "{NODE}"
site = "lab"
state_dir = "{state}"
log_level = "info"

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
payload = "sparkplug_b"
keepalive_s = 5
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[mqtt.sparkplug]
group_id = "{GROUP}"
device_death_grace_s = 0.5
{host_line}

[reporting]
interval_s = 1.0
allowed_lateness_s = 2.0
windows = ["hour", "day"]

[health]
interval_s = 1.0

[telemetry]
interval_s = 0.5

[devices.{PLC}]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{modbus_port}"
unit_id = 1
interval_ms = {POLL_MS}
addressing = "zero"
timeout_ms = 300
publish = "every"

[devices.{PLC}.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.{PLC}.tags.fault_code]
table = "holding"
address = 2
type = "uint16"

[devices.{PLC}.tags.good]
table = "holding"
address = 10
type = "uint32"

[devices.{PLC}.tags.total]
table = "holding"
address = 14
type = "uint32"

[devices.{PLC}.tags.speed]
table = "holding"
address = 20
type = "float32"
unit = "parts/min"

[devices.{PLC}.tags.temperature]
table = "holding"
address = 22
type = "float64"
unit = "°C"
publish = "aggregate"
aggregate_s = 1

[machines.press]
run = "{PLC}.running"
fault = "{PLC}.fault_code"
good = "{PLC}.good"
total = "{PLC}.total"

[machines.press.kpi]
ideal_cycle_time_s = 2.0

[contracts.{CONTRACT}]
machines = ["press"]
timezone = "UTC"
calendar = "24/7"

[contracts.{CONTRACT}.terms.availability]
kpi = "sla_availability"
target = 0.98
minimum = 0.95

[contracts.{CONTRACT}.terms.repair]
kpi = "mttr_s"
target = 2700
"""


@dataclass
class Agent:
    """The agent child process and how to restart it."""

    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start ``edge-agent run`` (its output appended to the log file)."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def stop(self) -> int:
        """SIGTERM by PID (SIGKILL after a bound); returns the exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.proc = None
        return int(proc.returncode)

    def tail(self) -> str:
        """The end of the agent's log, for failure messages."""
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorHost]:
    """The steady scenario on Modbus TCP, real clock."""
    async with SimulatorHost("steady", modbus_tcp=("127.0.0.1", 0), tick_s=0.05) as host:
        yield host


def make_agent(tmp_path: Path, mqtt_port: int, modbus_port: int, **kw: str) -> Agent:
    config = tmp_path / "agent.toml"
    config.write_text(agent_config(tmp_path / "state", mqtt_port, modbus_port, **kw))
    return Agent(config=config, log=tmp_path / "agent.log")


def decoded(messages: list[Received]) -> list[Msg]:
    """Every Sparkplug protobuf message of the capture, decoded (STATE is JSON: left out).

    The broker's redeliveries (DUP) of messages already received are left out.
    """
    return [
        decode(m.topic, m.payload) for m in first_deliveries(messages) if "/STATE/" not in m.topic
    ]


def count(kind: str, device: str | None = None) -> Callable[[list[Received]], int]:
    """How many messages of a kind (and device) a capture holds."""

    def n(messages: list[Received]) -> int:
        topic = f"spBv1.0/{GROUP}/{kind}/{NODE}" + (f"/{device}" if device else "")
        return sum(1 for m in messages if m.topic == topic)

    return n


async def wait(
    collector: MqttCollector, what: Callable[[list[Received]], bool], agent: Agent
) -> None:
    """Wait (bounded) for a predicate over the capture; fail with the agent's log."""
    ok = await asyncio.to_thread(collector.wait_for, what, WAIT_S)
    assert ok, f"timed out; agent log:\n{agent.tail()}"


def at_least(kind: str, n: int, device: str | None = None) -> Callable[[list[Received]], bool]:
    counter = count(kind, device)
    return lambda messages: counter(messages) >= n


def view(collector: MqttCollector) -> HostView:
    return HostView(decoded(collector.snapshot()), GROUP, NODE).check()


async def test_births_data_and_restart(
    mosquitto: Mosquitto, sim: SimulatorHost, tmp_path: Path
) -> None:
    """Births with types and units, then data; a restart ends and starts sessions by bdSeq.

    NBIRTH (bdSeq 0, seq 0) and DBIRTHs, then DDATA/NDATA; after a restart the explicit
    NDEATH carries bdSeq 0 and the new NBIRTH bdSeq 1 (persisted across the restart).
    """
    agent = make_agent(tmp_path, mosquitto.port, sim.modbus_port)
    with MqttCollector("127.0.0.1", mosquitto.port, "spBv1.0/#") as collector:
        agent.start()
        try:
            await wait(collector, at_least("DDATA", 3, PLC), agent)
            await wait(collector, at_least("DDATA", 1, MACHINE_DEVICE), agent)
            await wait(collector, at_least("DDATA", 1, CONTRACT_DEVICE), agent)
            await wait(collector, at_least("NDATA", 1), agent)
            assert agent.stop() == 0
            await wait(collector, at_least("NDEATH", 1), agent)
            agent.start()
            await wait(collector, at_least("NBIRTH", 2), agent)
            await wait(collector, lambda ms: count("DDATA", PLC)(ms) >= 6, agent)
        finally:
            assert agent.stop() == 0
        await wait(collector, at_least("NDEATH", 2), agent)
        host = view(collector)

    assert [s.bdseq for s in host.sessions] == [0, 1]
    assert all(len(s.deaths) == 1 for s in host.sessions), "each session ends with its NDEATH"
    first = host.sessions[0]
    nbirth, *dbirths = first.births
    assert nbirth.kind == "NBIRTH"
    assert {m.device for m in dbirths} == {PLC, MACHINE_DEVICE, CONTRACT_DEVICE}
    node_names = {m.name for m in nbirth.metrics}
    assert {"bdSeq", "Node Control/Rebirth", "Properties/agent", "Health/cpu_percent"} <= node_names
    assert nbirth.named("Properties/agent").value == NODE
    plc = next(m for m in dbirths if m.device == PLC)
    speed = plc.named("speed")
    assert speed.datatype == 9  # Float (float32 register pair)
    assert speed.properties.get("engUnit") == "parts/min"
    assert plc.named("good").datatype == 7  # UInt32
    assert plc.named("fault_code").datatype == 6  # UInt16
    assert plc.named("running").datatype == 11  # Boolean
    assert plc.named("temperature/mean").datatype == 10  # Double
    assert plc.named("temperature/mean").properties.get("engUnit") == "°C"
    machine = next(m for m in dbirths if m.device == MACHINE_DEVICE)
    names = {m.name for m in machine.metrics}
    assert {"KPI/hour/availability", "KPI/day/oee", "KPI/day/window", "Stop/event_id"} <= names
    assert machine.named("KPI/hour/start").datatype == 13  # DateTime
    # Values: counters go up, KPI records carry their window.
    goods = [v for _t, v, _h in host.values(PLC, "good") if v is not None]
    assert goods == sorted(goods)
    assert len(goods) >= 6
    windows = [v for _t, v, _h in host.values(MACHINE_DEVICE, "KPI/hour/window")]
    assert windows
    assert all(str(w).startswith("hour:") for w in windows)
    aggregates = host.values(PLC, "temperature/count")
    assert aggregates
    assert all(v >= 1 for _t, v, _h in aggregates)
    # The contract's status: its own device, one folder per term and level (docs/sparkplug.md).
    contract = next(m for m in dbirths if m.device == CONTRACT_DEVICE)
    names = {m.name for m in contract.metrics}
    assert {
        "Status/period",
        "Status/at",
        "Term/availability/state",
        "Term/availability/so_far",
        "Term/availability/minimum/budget",
        "Term/repair/target/threshold",
        "Alert/alert_id",
    } <= names
    assert contract.named("Term/availability/target/budget").properties.get("engUnit") == "s"
    assert contract.named("Status/at").datatype == 13  # DateTime
    periods = [v for _t, v, _h in host.values(CONTRACT_DEVICE, "Status/period")]
    assert periods
    assert all(str(p).startswith("month:") for p in periods)
    states = {v for _t, v, _h in host.values(CONTRACT_DEVICE, "Term/availability/state")}
    assert states
    assert states <= {"on_track", "at_risk", "breached"}
    thresholds = {
        v for _t, v, _h in host.values(CONTRACT_DEVICE, "Term/availability/target/threshold")
    }
    assert thresholds == {0.98}


async def test_device_down_up_and_rebirth_request(
    mosquitto: Mosquitto, sim: SimulatorHost, tmp_path: Path
) -> None:
    """A silent PLC gets its DDEATH and its return a DBIRTH; an NCMD rebirth re-births.

    The rebirth re-sends every birth with the same bdSeq and seq from 0, and data goes on
    with no seq gap.
    """
    agent = make_agent(tmp_path, mosquitto.port, sim.modbus_port)
    with MqttCollector("127.0.0.1", mosquitto.port, "spBv1.0/#") as collector:
        agent.start()
        try:
            await wait(collector, at_least("DDATA", 2, PLC), agent)
            sim.machine("M1").set_outage(True)
            await wait(collector, at_least("DDEATH", 1, PLC), agent)
            dead_at = len(collector.snapshot())
            await asyncio.sleep(1.5)
            assert count("DDATA", PLC)(collector.snapshot()[dead_at:]) == 0, "DDATA while dead"
            sim.machine("M1").set_outage(False)
            await wait(collector, at_least("DBIRTH", 2, PLC), agent)
            before = count("DDATA", PLC)(collector.snapshot())
            await wait(collector, lambda ms: count("DDATA", PLC)(ms) > before + 1, agent)
            publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-host")
            publisher.connect("127.0.0.1", mosquitto.port)
            publisher.loop_start()
            info = publisher.publish(f"spBv1.0/{GROUP}/NCMD/{NODE}", rebirth_command(), qos=0)
            info.wait_for_publish(5)
            publisher.disconnect()
            publisher.loop_stop()
            await wait(collector, at_least("NBIRTH", 2), agent)
            births = count("DDATA", PLC)(collector.snapshot())
            await wait(collector, lambda ms: count("DDATA", PLC)(ms) > births + 1, agent)
        finally:
            assert agent.stop() == 0
        host = view(collector)

    assert len(host.sessions) == 1, "a rebirth keeps the MQTT session and its bdSeq"
    session = host.sessions[0]
    nbirths = [m for m in session.births if m.kind == "NBIRTH"]
    assert len(nbirths) == 2
    assert {m.named("bdSeq").value for m in nbirths} == {0}
    ddeaths = [m for m in session.deaths if m.kind == "DDEATH"]
    assert [m.device for m in ddeaths] == [PLC]
    machine_deaths = [m for m in session.deaths if m.device == MACHINE_DEVICE]
    assert machine_deaths == [], "the machine device lives while the agent does"


async def test_broker_outage_history_is_flagged_and_complete(
    mosquitto_factory: MosquittoFactory, sim: SimulatorHost, tmp_path: Path
) -> None:
    """Rows of a broker outage follow the next birth, flagged is_historical, none missing.

    During the outage rows wait in the outbox; after it a new session (bdSeq + 1)
    publishes them flagged is_historical, and no poll of the outage is missing.
    """
    broker = mosquitto_factory(persistence=True)
    agent = make_agent(tmp_path, broker.port, sim.modbus_port)
    collector = MqttCollector(
        "127.0.0.1", broker.port, "spBv1.0/#", client_id="spb-outage", clean=False
    ).start()
    try:
        agent.start()
        await wait(collector, at_least("DDATA", 3, PLC), agent)
        await asyncio.to_thread(broker.stop)
        outage_start = time.time()
        await asyncio.sleep(3.0)
        outage_end = time.time()
        await asyncio.to_thread(broker.start)
        await wait(collector, at_least("NBIRTH", 2), agent)

        def caught_up(messages: list[Received]) -> bool:
            stamps = [
                m.timestamp
                for msg in decoded(messages)
                if msg.kind == "DDATA" and msg.device == PLC
                for m in msg.metrics
                if m.timestamp
            ]
            return bool(stamps) and max(stamps) > (outage_end + 1.0) * 1000

        await wait(collector, caught_up, agent)
    finally:
        assert agent.stop() == 0
        collector.stop()
    host = view(collector)
    assert [s.bdseq for s in host.sessions] == [0, 1]
    goods = host.values(PLC, "good")
    during = [(t, h) for t, _v, h in goods if outage_start * 1000 < t < outage_end * 1000]
    assert during, "no value of the outage was published"
    assert all(h for _t, h in during), "values stored during the outage must be is_historical"
    live = [t for t, _v, h in goods if not h and t > (outage_end + 1.0) * 1000]
    assert live, "live values after the outage are not historical"
    stamps = sorted({t for t, _v, _h in goods})
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 3 * POLL_MS, f"a poll is missing: largest gap {max(gaps)} ms"


async def test_primary_host_offline_holds_data_online_releases_it(
    mosquitto: Mosquitto, sim: SimulatorHost, tmp_path: Path
) -> None:
    """The primary host's STATE gates births; offline holds data, online releases it.

    Nothing is born until STATE says online; going offline makes the node publish NDEATH
    and reconnect; the held data follows the next birth, flagged historical.
    """
    agent = make_agent(tmp_path, mosquitto.port, sim.modbus_port, primary_host="scada")
    host_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scada-test")
    host_client.connect("127.0.0.1", mosquitto.port)
    host_client.loop_start()
    state_topic = "spBv1.0/STATE/scada"

    def set_state(online: bool) -> None:
        info = host_client.publish(
            state_topic, state_payload(online, int(time.time() * 1000)), qos=1, retain=True
        )
        info.wait_for_publish(5)

    try:
        set_state(False)
        with MqttCollector("127.0.0.1", mosquitto.port, "spBv1.0/#") as collector:
            agent.start()
            await asyncio.sleep(3.0)
            assert count("NBIRTH")(collector.snapshot()) == 0, "born while the host is offline"
            held_until = time.time()
            set_state(True)
            await wait(collector, at_least("NBIRTH", 1), agent)
            await wait(collector, at_least("DDATA", 3, PLC), agent)
            set_state(False)
            await wait(collector, at_least("NDEATH", 1), agent)
            await asyncio.sleep(2.0)
            offline_at = len(collector.snapshot())
            set_state(True)
            await wait(collector, at_least("NBIRTH", 2), agent)
            await wait(collector, lambda ms: count("DDATA", PLC)(ms[offline_at:]) >= 3, agent)
            assert agent.stop() == 0
            host = view(collector)
    finally:
        agent.stop()
        host_client.disconnect()
        host_client.loop_stop()

    assert len(host.sessions) == 2
    first, second = host.sessions
    assert second.bdseq == first.bdseq + 1, (
        "the reconnect after the host went away is a new CONNECT"
    )
    assert [m.named("bdSeq").value for m in first.deaths] == [first.bdseq]
    held = [(t, h) for t, _v, h in host.values(PLC, "good") if t < held_until * 1000]
    assert held, "data polled while the host was offline was not published"
    assert all(h for _t, h in held), "data held for the primary host must be is_historical"
