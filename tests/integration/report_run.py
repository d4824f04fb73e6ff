"""Run the agent on the simulator's scripted scenarios for the report tests (~15 s).

Two bundled simulators, each playing one scripted scenario faster than real time
on its own Modbus TCP port, feed one in-process agent (``Runtime``) that publishes
to a real Mosquitto:

* ``m1`` plays ``kpi_truth`` at 100x: micro-stops, breakdowns with fault codes 17 and
  42 (42 is the customer's), an idle stop without a code, scrap, 16-bit counters;
* ``m2`` plays ``e2e`` at 20x: running, fault 42 for 20 sim s, running.

Sim time is held at 0 until the agent has seen both machines (:class:`GatedClock`),
so the scripted stops all fall inside the run. A ``contract:START/END`` report window
ends shortly after the scripts do, so the buffer and the evidence chain hold *final*
KPI records as well as the "so far" ones, and an outcome contract on ``m1`` publishes
its status. The agent is stopped cleanly before the test reads anything.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from simulators.host import SimulatorHost
from tests.integration.sim_config import agent_section, machine_section, modbus_device
from tests.integration.truth_kit import GatedClock

TRUTH_SPEED = 100.0
TRUTH_HOLD_S = 900.0  # the kpi_truth script is over at 893.5 sim s
E2E_SPEED = 20.0
E2E_HOLD_S = 70.0
#: The report window closes this long after sim time is released (scripts over by ~9 s).
WINDOW_AFTER_RELEASE_S = 10.5
LATENESS_S = 0.5

KPI_M1 = f"""ideal_cycle_time_s = {1.0 / TRUTH_SPEED}
micro_stop_threshold_s = {120.0 / TRUTH_SPEED}
max_gap_s = 1.0
timezone = "UTC"

[[machines.m1.kpi.shifts]]
name = "24h"
start = "00:00"
end = "00:00"

[machines.m1.kpi.sla]
customer_fault_codes = [42]
"""
KPI_M2 = f"""ideal_cycle_time_s = {1.0 / E2E_SPEED}
micro_stop_threshold_s = {10.0 / E2E_SPEED}
max_gap_s = 1.0
timezone = "UTC"

[[machines.m2.kpi.shifts]]
name = "24h"
start = "00:00"
end = "00:00"
"""
FAULT_NAMES = """
[machines.m1.fault_names]
5 = "Light curtain"
17 = "Motor overload"
42 = "Guard door open"
"""
CONTRACT = """
[contracts.line1]
machines = ["m1"]
timezone = "UTC"
calendar = "machine"

[contracts.line1.terms.availability]
kpi = "sla_availability"
target = 0.98
minimum = 0.95

[contracts.line1.terms.repair]
kpi = "mttr_s"
target = 3
"""


@dataclass(frozen=True, slots=True)
class ScenarioRun:
    """What the run left: the agent's config, state and the window it closed."""

    config: Path
    state: Path
    db: Path
    start: float  # the contract window's start (UNIX s)
    end: float  # its end


def _iso(ts: float) -> datetime:
    return datetime.fromtimestamp(round(ts, 3), tz=timezone.utc)


async def run_scenarios(tmp: Path, mqtt_port: int) -> ScenarioRun:
    """Play both scenarios through the agent; returns once the agent has stopped."""
    from edge_agent.config import load_config
    from edge_agent.runtime import Runtime

    state = tmp / "state"
    state.mkdir()
    truth_clock = GatedClock(TRUTH_SPEED, TRUTH_HOLD_S)
    e2e_clock = GatedClock(E2E_SPEED, E2E_HOLD_S)
    async with (
        SimulatorHost(
            "kpi_truth",
            speed=TRUTH_SPEED,
            seed=1,
            clock=truth_clock,
            modbus_tcp=("127.0.0.1", 0),
            tick_s=0.01,
        ) as truth,
        SimulatorHost(
            "e2e",
            speed=E2E_SPEED,
            seed=1,
            clock=e2e_clock,
            modbus_tcp=("127.0.0.1", 0),
            tick_s=0.02,
        ) as e2e,
    ):
        # Whole seconds: the contract window's name carries its bounds.
        start = float(int(time.time()) - 30)
        # The window must end after the scripts; sim time starts within ~3 s from now.
        end = float(int(time.time() + 3.0 + WINDOW_AFTER_RELEASE_S) + 1)
        text = (
            agent_section(
                agent_id="report-gw",
                state=state,
                mqtt_port=mqtt_port,
                windows='["hour", "day"]',
                allowed_lateness_s=LATENESS_S,
                status_interval_s=1.0,
                contract=(_iso(start), _iso(end)),
            )
            + modbus_device("plc1", modbus_port=truth.modbus_port, poll_ms=100, counter_bits=16)
            + modbus_device("plc2", modbus_port=e2e.modbus_port, poll_ms=100)
            + machine_section("m1", device="plc1", kpi=KPI_M1, counter_bits=16)
            + FAULT_NAMES
            + machine_section("m2", device="plc2", kpi=KPI_M2)
            + CONTRACT
        )
        config = tmp / "agent.toml"
        config.write_text(text, encoding="utf-8")
        rt = Runtime(load_config(config), install_signals=False)
        agent = asyncio.create_task(rt.run(), name="agent")
        try:
            deadline = time.monotonic() + 15.0
            while any(mr.state.value == "unknown" for mr in rt.machines.values()):
                assert time.monotonic() < deadline, "the agent never read both machines"
                assert not agent.done(), "the agent stopped early"
                await asyncio.sleep(0.05)
            truth_clock.release()
            e2e_clock.release()
            # Until the window is final (its end + lateness) and a reporting round ran.
            while time.time() < end + LATENESS_S + 1.5:
                assert not agent.done(), "the agent stopped early"
                await asyncio.sleep(0.1)
        finally:
            rt.request_stop()
            code = await asyncio.wait_for(agent, timeout=20.0)
        assert code == 0
    return ScenarioRun(config=config, state=state, db=state / "buffer.db", start=start, end=end)
