"""The collector stores what the running agent really publishes.

Bundled Modbus simulator → agent process → real Mosquitto → collector process → real
PostgreSQL, with a plain subscriber capturing the same traffic. Every numbered message
the agent published must be in the database once, none quarantined: the collector
validates them against the repository's ``schemas/`` (reading old data shapes of KPI
records and stop events as the decided ones, so this holds before and after the payload
changes of this round), and the stored KPI record of each window is the agent's last word
on it.
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

from edge_agent.collect.envelope import Message, classify
from edge_agent.collect.schemas import load_schemas
from simulators.host import SimulatorHost
from tests.integration.collect_support import (
    CollectorProcess,
    collector_toml,
    query,
    scalar,
    wait_until,
)
from tests.integration.sim_config import sim_machine_config
from tests.plugins.broker import Mosquitto, MqttCollector, Received

pytestmark = pytest.mark.integration

KPI = """
ideal_cycle_time_s = 0.1
micro_stop_threshold_s = 1.0
max_gap_s = 1.0

[[machines.press.kpi.shifts]]
name = "day"
start = "00:00"
end = "12:00"

[[machines.press.kpi.shifts]]
name = "night"
start = "12:00"
end = "00:00"
"""


def _numbered(messages: list[Received]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m.payload.startswith(b"{"):
            doc = m.json()
            if "seq" in doc:
                out.append(doc)
    return out


def _ended_stop(messages: list[Received]) -> bool:
    for doc in _numbered(messages):
        data = doc["data"]
        if doc["kind"] == "stop" and data.get("end") is not None:
            return True
    return False


async def test_agent_traffic_is_stored_once_and_validated(
    mosquitto: Mosquitto, pg_migrated: str, tmp_path: Path
) -> None:
    """Every kpi, stop, health and telemetry message of a real agent run is stored once."""
    dsn = pg_migrated
    cfg = tmp_path / "collector.toml"
    cfg.write_text(collector_toml(dsn=dsn, port=mosquitto.port, client_id="real"))
    collector = CollectorProcess(cfg, "real").start()
    try:
        async with SimulatorHost(
            "e2e", speed=10.0, seed=1, modbus_tcp=("127.0.0.1", 0), tick_s=0.01
        ) as sim:
            text = sim_machine_config(
                agent_id="real-gw",
                machine="press",
                state=tmp_path / "state",
                mqtt_port=mosquitto.port,
                modbus_port=sim.modbus_port,
                poll_ms=100,
                windows='["hour", "day", "shift"]',
                allowed_lateness_s=1.0,
                kpi=KPI,
                status_interval_s=1.0,
            )
            # Telemetry too: every reading of the device, one message per second.
            text = text.replace("timeout_ms = 500\n", 'timeout_ms = 500\npublish = "every"\n')
            text = text.replace("[mqtt]", "[health]\ninterval_s = 1.0\n\n[mqtt]", 1)
            config = tmp_path / "agent.toml"
            config.write_text(text)
            with MqttCollector("127.0.0.1", mosquitto.port, "edge/#") as capture:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                try:
                    for _ in range(40):  # bounded: 40 x 1 s
                        if await asyncio.to_thread(capture.wait_for, _ended_stop, 1.0):
                            break
                        if proc.poll() is not None:
                            break
                    await asyncio.sleep(2.5)  # a few more reports, health and telemetry
                finally:
                    proc.send_signal(signal.SIGTERM)
                    out, _ = proc.communicate(timeout=20)
                assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
                await asyncio.sleep(0.5)
                messages = capture.snapshot()

        numbered = _numbered(messages)
        kinds = {d["kind"] for d in numbered}
        assert {"kpi", "stop", "health", "telemetry"} <= kinds, kinds
        keys = {(d["agent"], d.get("epoch", ""), d["seq"]) for d in numbered}
        assert wait_until(lambda: scalar(dsn, "SELECT count(*) FROM ledger") == len(keys), 30), (
            collector.output
        )

        # Stored once each, nothing quarantined: every message passed the repo's schemas.
        assert set(query(dsn, "SELECT agent, epoch, seq FROM ledger")) == keys
        assert query(dsn, "SELECT reason FROM quarantine") == []
        for kind, table in (("telemetry", "telemetry"), ("health", "health")):
            n = len({(d["seq"]) for d in numbered if d["kind"] == kind})
            assert scalar(dsn, f"SELECT count(*) FROM {table}") == n, kind  # noqa: S608
        schemas = load_schemas()
        checked = [classify(m.payload, schemas) for m in messages if m.payload.startswith(b"{")]
        assert all(isinstance(c, Message) for c in checked)

        # The stored record of each window is the highest-ranked one the agent sent.
        best: dict[str, Message] = {}
        for c in checked:
            if isinstance(c, Message) and c.kind == "kpi":
                w = c.data["window"]
                rank = (c.data.get("final") is True, c.data["revision"], c.seq or 0)
                old = best.get(w)
                if old is None or rank > (
                    old.data.get("final") is True,
                    old.data["revision"],
                    old.seq or 0,
                ):
                    best[w] = c
        stored = {
            r[0]: r[1:]
            for r in query(dsn, "SELECT window_name, seq, operating_time_s FROM kpi_records")
        }
        assert set(stored) == set(best)
        for window, msg in best.items():
            assert stored[window] == (msg.seq, msg.data["operating_time_s"]), window

        stops = {c.data["event_id"] for c in checked if isinstance(c, Message) and c.kind == "stop"}
        assert scalar(dsn, "SELECT count(*) FROM stop_events") == len(stops) >= 1
        assert query(dsn, "SELECT agent, missing, status FROM agent_overview") == [
            ("real-gw", 0, "offline")
        ]
    finally:
        assert collector.stop() == 0
