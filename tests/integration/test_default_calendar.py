"""A machine without shifts is planned 24/7 (kpi-spec §3.4), end to end.

The configuration is what ``edge-agent-sim describe --format toml`` generates (no
shifts, no planned windows) plus ``[agent]``/``[mqtt]``/``[reporting]``: ``check-config``
says which calendar the machine gets, the running agent (child process, bundled
simulator over Modbus TCP, real Mosquitto) publishes KPI records with values and the
flag ``calendar_24_7``, and ``edge-agent status`` shows percentages, not ``-``.
An explicit ``planned_windows = []`` still plans nothing. About 8 s.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from edge_agent.commands.check_config import summary
from edge_agent.config import load_config
from simulators.cli import main as sim_main
from simulators.host import SimulatorHost
from tests.plugins.broker import Mosquitto, MqttCollector

pytestmark = pytest.mark.integration


def _described(modbus_port: int) -> str:
    """The simulator's generated agent configuration, Modbus part only (no OPC-UA server)."""
    out = io.StringIO()
    argv = ["describe", "--scenario", "steady", "--format", "toml"]
    with redirect_stdout(out):
        assert sim_main([*argv, "--modbus-port", str(modbus_port)]) == 0
    text = out.getvalue()
    cut, resume = text.index("[devices.m1ua]"), text.index("[machines.m1]")
    return text[:cut] + text[resume:]


def _head(state: Path, mqtt_port: int) -> str:
    return f"""
[agent]
id = "cal-gw"
site = "e2e"
state_dir = "{state}"
status_interval_s = 0.5

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[reporting]
interval_s = 1.0
windows = ["shift", "day"]
"""


def test_check_config_names_each_machines_calendar(tmp_path: Path) -> None:
    """24/7 by default (and no shift windows for it); planned_windows = [] plans nothing."""
    path = tmp_path / "agent.toml"
    path.write_text(_head(tmp_path / "s", 1883) + _described(5020))
    text = summary(load_config(path))
    assert "  calendar: 24/7 (no shifts or planned_windows), zone UTC;" in text
    assert "no shift windows for m1 (no shifts configured)" in text
    path.write_text(path.read_text() + "planned_windows = []\n")
    config = load_config(path)
    assert not config.machines["m1"].kpi.always_planned
    assert "calendar: nothing planned (planned_windows = [])" in summary(config)


async def test_generated_config_gives_kpis(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Records with numbers and calendar_24_7; the status screen shows them."""
    state = tmp_path / "state"
    async with SimulatorHost("steady", speed=1.0, seed=1, modbus_tcp=("127.0.0.1", 0)) as sim:
        config = tmp_path / "agent.toml"
        config.write_text(_head(state, mosquitto.port) + _described(sim.modbus_port))

        def ready(docs: list[dict[str, Any]]) -> bool:
            return any(d["data"].get("availability") is not None for d in docs)

        with MqttCollector("127.0.0.1", mosquitto.port, "edge/+/+/m1/kpi/#") as collector:
            proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", "-c", str(config)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            try:
                ok = False
                for _ in range(20):  # bounded: 20 x 1 s; stop early if the agent died
                    ok = await asyncio.to_thread(
                        collector.wait_for, lambda ms: ready([m.json() for m in ms]), 1.0
                    )
                    if ok or proc.poll() is not None:
                        break
                await asyncio.sleep(1.0)  # one more status snapshot after that record
                status = subprocess.run(
                    [sys.executable, "-m", "edge_agent", "status", "-c", str(config), "--json"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                screen = subprocess.run(
                    [sys.executable, "-m", "edge_agent", "status", "-c", str(config)],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=20)
            assert ok, out.decode(errors="replace")[-3000:]
            records = [m.json()["data"] for m in collector.snapshot()]

    day = [r for r in records if r["window_kind"] == "day"]
    assert day
    assert all("calendar_24_7" in r["flags"] for r in records)
    assert "no_planned_time" not in day[-1]["flags"]
    assert day[-1]["planned_time_s"] > 0
    assert day[-1]["availability"] is not None
    assert not [r for r in records if r["window_kind"] == "shift"]  # no shifts, no shift windows
    today = json.loads(status.stdout)["machines"]["m1"]["today"]
    assert today["availability"] is not None, status.stdout
    lines = screen.stdout.splitlines()
    machines = lines[next(i for i, ln in enumerate(lines) if ln.startswith("MACHINES")) :]
    rows = [ln for ln in machines if ln.strip().startswith("m1 ")]
    assert rows, screen.stdout
    assert "%" in rows[0], screen.stdout
    assert "(calendar_24_7)" in screen.stdout  # the footnote says why
