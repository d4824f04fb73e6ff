"""Agent TOML for one simulated machine behind the bundled Modbus TCP simulator.

Shared by the end-to-end tests: the simulator's register map (coil 0 run bit,
holding 2 fault code, 32-bit counters at 10/14 or 16-bit at 16/18), the agent
reporting on a private broker, and the machine's KPI profile scaled by the test.
"""

from __future__ import annotations

from pathlib import Path

_COUNTERS = {32: (10, 14, "uint32"), 16: (16, 18, "uint16")}


def sim_machine_config(
    *,
    agent_id: str,
    machine: str,
    state: Path,
    mqtt_port: int,
    modbus_port: int,
    poll_ms: int,
    windows: str,
    allowed_lateness_s: float,
    kpi: str,
    counter_bits: int = 32,
    status_interval_s: float = 5.0,
) -> str:
    """The TOML text; ``kpi`` is the body of ``[machines.<machine>.kpi]`` (plus its shifts)."""
    good, total, kind = _COUNTERS[counter_bits]
    return f"""
[agent]
id = "{agent_id}"
site = "e2e"
state_dir = "{state}"
log_level = "info"
status_interval_s = {status_interval_s}

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[reporting]
interval_s = 1.0
allowed_lateness_s = {allowed_lateness_s}
windows = {windows}

[devices.plc]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{modbus_port}"
unit_id = 1
interval_ms = {poll_ms}
addressing = "zero"
timeout_ms = 500

[devices.plc.tags.running]
table = "coil"
address = 0
type = "bool"

[devices.plc.tags.fault_code]
table = "holding"
address = 2
type = "uint16"

[devices.plc.tags.good]
table = "holding"
address = {good}
type = "{kind}"

[devices.plc.tags.total]
table = "holding"
address = {total}
type = "{kind}"

[machines.{machine}]
run = "plc.running"
fault = "plc.fault_code"
good = "plc.good"
total = "plc.total"

[machines.{machine}.kpi]
counter_bits = {counter_bits}
{kpi}"""
