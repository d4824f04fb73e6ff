"""A clean SIGTERM sends what the agent stores on its way out (issue 22 item 7).

A real agent process polls one machine on the bundled Modbus simulator and
publishes its counters as one-minute aggregates; it is stopped after a few
seconds, long before the first aggregate window closes. On its way out the agent
stores the partial aggregate windows (the last telemetry batch) and a last "so
far" record of every open KPI window. Both must reach the subscriber before the
process exits, and the outbox must be empty: nothing waits for the next start.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulators.host import SimulatorHost
from tests.integration.envelope_kit import envelope_time, envelopes
from tests.plugins.broker import Mosquitto, MqttCollector

pytestmark = pytest.mark.integration

CONFIG = """
[agent]
id = "stop-gw"
site = "lab"
state_dir = "{state}"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[reporting]
interval_s = 1.0

[devices.plc]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{modbus_port}"
unit_id = 1
interval_ms = 200
addressing = "zero"
publish = "aggregate"
aggregate_s = 60

[devices.plc.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.plc.tags.good]
table = "holding"
address = 10
type = "uint32"

[devices.plc.tags.total]
table = "holding"
address = 14
type = "uint32"

[machines.press]
run = "plc.running"
good = "plc.good"
total = "plc.total"

[machines.press.kpi]
ideal_cycle_time_s = 1.0
"""


async def test_sigterm_sends_the_last_telemetry_and_records(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Partial aggregates and the stop's KPI records arrive before exit; the outbox is empty."""
    async with SimulatorHost("steady", speed=1.0, seed=3, modbus_tcp=("127.0.0.1", 0)) as sim:
        state = tmp_path / "state"
        config = tmp_path / "agent.toml"
        config.write_text(
            CONFIG.format(state=state, mqtt_port=mosquitto.port, modbus_port=sim.modbus_port)
        )
        with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as coll:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                assert await asyncio.to_thread(
                    coll.wait_for, lambda ms: len(envelopes(ms, "kpi")) >= 2, 20
                )
                await asyncio.sleep(2.0)
                # The 60 s windows are aligned to the clock: one may close before the stop.
                before = set(envelopes(coll.snapshot(), "telemetry"))
                term = time.time()
                proc.send_signal(signal.SIGTERM)
                out, _ = await asyncio.to_thread(proc.communicate, None, 15)
                exited = time.time()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            text = out.decode(errors="replace")
            assert proc.returncode == 0, text[-3000:]
            assert exited - term < 10, text[-3000:]
            # Sent before the exit: the broker has them; the subscriber gets them promptly.
            assert await asyncio.to_thread(
                coll.wait_for, lambda ms: bool(set(envelopes(ms, "telemetry")) - before), 5
            ), text[-3000:]
            await asyncio.sleep(0.5)
            messages = coll.snapshot()

    telemetry = {k: v for k, v in envelopes(messages, "telemetry").items() if k not in before}
    assert telemetry
    assert all(envelope_time(d) >= term for d in telemetry.values())
    body = json.dumps([d["data"] for d in telemetry.values()])
    assert '"total"' in body, body[:2000]
    assert '"good"' in body, body[:2000]
    last_records = [d for d in envelopes(messages, "kpi").values() if envelope_time(d) >= term]
    assert last_records, "no KPI record made at the stop arrived"
    con = sqlite3.connect(state / "buffer.db")
    try:
        (left,) = con.execute("SELECT count(*) FROM outbox").fetchone()
    finally:
        con.close()
    assert left == 0, f"{left} rows left in the outbox for the next start"
