"""SIGHUP changing a machine, with the real agent process (issue 22's reload findings).

* A changed KPI profile (``ideal_cycle_time_s``) closes the day window with the known
  time and the parts counted (a final record flagged ``reconfigured``), logs the
  change, and the replacement reports the rest of the day from the reload instant on,
  with no unknown time of its own.
* A change outside the profile (``signal_max_age_s``) keeps the live calculator and the
  values already read: a signal polled slowly is not unknown until its next poll.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crash_kit import (
    SLOW_DEVICE,
    AgentProcess,
    payloads,
    status,
    wait_status,
    write_config,
    write_scenario,
)
from tests.plugins.broker import Mosquitto, MqttCollector
from tests.plugins.simulator import SimProcess

pytestmark = pytest.mark.integration


def today(state: Path) -> dict[str, Any]:
    return dict((status(state).get("machines", {}).get("a") or {}).get("today") or {})


def known(rec: dict[str, Any]) -> float:
    """Planned time the agent knew the machine's state of."""
    return float(rec.get("planned_time_s", 0.0)) - float(rec.get("unknown_time_s", 0.0))


def kpis(coll: MqttCollector) -> list[dict[str, Any]]:
    return [e["data"] for e in payloads(coll.snapshot(), "kpi")]


def test_a_changed_profile_closes_the_day_with_its_known_time_and_parts(
    tmp_path: Path, mosquitto: Mosquitto, sim_process_factory: Callable[..., SimProcess]
) -> None:
    """ideal_cycle_time_s 1.0 -> 1.5 by SIGHUP: the day so far is published final, not wiped."""
    sim = sim_process_factory(str(write_scenario(tmp_path / "s.toml", period_s=5, stop_s=2)))
    state = tmp_path / "state"
    settings: dict[str, Any] = {
        "state": state,
        "mqtt_port": mosquitto.port,
        "port": sim.modbus_port,
        "report_s": 1.0,
    }
    config = write_config(tmp_path / "agent.toml", **settings)
    agent = AgentProcess(config, tmp_path / "agent.log")
    with MqttCollector("127.0.0.1", mosquitto.port, "#", client_id="reload-sub") as coll:
        try:
            wait_status(state, lambda s: known(today(state)) > 6.0, 30)
            before = today(state)
            write_config(config, **settings, ideal_s=1.5)
            agent.hup()
            day = before["window"]

            def closed(_m: Any) -> list[dict[str, Any]]:
                return [
                    d
                    for d in kpis(coll)
                    if d["window"] == day and d["final"] and "reconfigured" in d["flags"]
                ]

            def rest(_m: Any) -> list[dict[str, Any]]:
                return [d for d in kpis(coll) if d["window"].startswith(f"{day}~")]

            assert coll.wait_for(lambda m: bool(closed(m)) and len(rest(m)) >= 3, 20), (
                agent.output()[-3000:]
            )
            final = closed(None)[-1]
            part = rest(None)[-1]
            # The status keeps the day before the reload visible next to the rest of it.
            snap = wait_status(
                state, lambda s: str(today(state).get("window", "")).startswith(f"{day}~"), 10
            )
            shown = snap["machines"]["a"]["today_before_reload"]
            view = subprocess.run(
                [sys.executable, "-m", "edge_agent", "status", "--state-dir", str(state)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,  # exit code = agent state; the text is what is checked
            ).stdout
        finally:
            assert agent.stop() == 0, agent.output()[-3000:]
    # The day up to the reload: everything known before it, counted once, final.
    assert known(final) >= known(before), json.dumps([before, final], indent=1)
    assert final["total_count"] >= before["total_count"]
    # The rest of the day: from the reload instant, under the new profile, nothing unknown.
    assert part["start"] == final["end"]
    assert part["unknown_time_s"] < 0.5, part
    assert part["profile_hash"] != final["profile_hash"]
    assert [p["window"] for p in shown] == [day]
    assert known(shown[0]) >= known(before)
    assert "a: KPI profile changed at " in view, view
    log = agent.output()
    assert "Machine reconfigured, windows closed machine=a change=profile" in log


def test_a_change_outside_the_profile_keeps_the_values_already_read(
    tmp_path: Path, mosquitto: Mosquitto, sim_process_factory: Callable[..., SimProcess]
) -> None:
    """signal_max_age_s changed by SIGHUP: no unknown time while a slow signal awaits its poll."""
    sim = sim_process_factory(str(write_scenario(tmp_path / "s.toml", period_s=5, stop_s=2)))
    state = tmp_path / "state"
    settings: dict[str, Any] = {
        "state": state,
        "mqtt_port": mosquitto.port,
        "port": sim.modbus_port,
        "report_s": 1.0,
        "extra_devices": SLOW_DEVICE.format(port=sim.modbus_port, interval_ms=6000),
        "fault_ref": "slow.fault_code",
    }
    config = write_config(tmp_path / "agent.toml", **settings)
    agent = AgentProcess(config, tmp_path / "agent.log")
    try:
        first = wait_status(state, lambda s: known(today(state)) > 8.0, 40)
        written = first["written_at"]
        # A fresh report (1 s) after a fresh status: the figure the reload must not worsen.
        wait_status(state, lambda s: s["written_at"] > written + 1.5, 10)
        before = today(state)
        write_config(config, **settings, machine_extra="signal_max_age_s = 20.0")
        agent.hup()
        deadline = time.monotonic() + 15
        while "Machine updated, calculator kept machine=a" not in agent.output():
            assert time.monotonic() < deadline, agent.output()[-3000:]
            time.sleep(0.1)
        time.sleep(8.0)  # longer than the slow device's poll interval
        after = today(state)
    finally:
        assert agent.stop() == 0, agent.output()[-3000:]
    assert after["window"] == before["window"]
    assert known(after) > known(before) + 7.0
    assert after["unknown_time_s"] - before["unknown_time_s"] < 0.5, (before, after)
