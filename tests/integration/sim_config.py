"""Agent TOML for simulated machines behind the bundled simulators (Modbus TCP and OPC-UA).

Shared by the end-to-end tests: the simulator's register map (coil 0 run bit,
holding 2 fault code, 32-bit counters at 10/14 or 16-bit at 16/18), its OPC-UA
nodes (``nsu=urn:edge-agent:simulator;s=<machine>.<Variable>``), the agent
reporting on a private broker, and each machine's KPI profile scaled by the test.

The pieces compose: :func:`agent_section` + one or more device blocks
(:func:`modbus_device`, :func:`opcua_device`) + one :func:`machine_section` per
machine. :func:`sim_machine_config` is the one-machine Modbus configuration.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from simulators import NAMESPACE_URI

_COUNTERS = {32: (10, 14, "uint32"), 16: (16, 18, "uint16")}


def agent_section(
    *,
    agent_id: str,
    state: Path,
    mqtt_port: int,
    windows: str,
    allowed_lateness_s: float,
    status_interval_s: float = 5.0,
    contract: tuple[datetime, datetime] | None = None,
    health_interval_s: float | None = None,
) -> str:
    """``[agent]``, ``[mqtt]``, ``[reporting]`` (optional contract window), ``[health]``."""
    contract_keys = ""
    if contract is not None:
        start, end = (c.isoformat().replace("+00:00", "Z") for c in contract)
        contract_keys = f"contract_start = {start}\ncontract_end = {end}\n"
    if health_interval_s is not None:
        contract_keys += f"\n[health]\ninterval_s = {health_interval_s}\n"
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
{contract_keys}"""


def modbus_device(name: str, *, modbus_port: int, poll_ms: int, counter_bits: int = 32) -> str:
    """A Modbus TCP device reading unit 1's run bit, fault code and counters."""
    good, total, kind = _COUNTERS[counter_bits]
    return f"""
[devices.{name}]
protocol = "modbus_tcp"
endpoint = "127.0.0.1:{modbus_port}"
unit_id = 1
interval_ms = {poll_ms}
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
address = {good}
type = "{kind}"

[devices.{name}.tags.total]
table = "holding"
address = {total}
type = "{kind}"
"""


def opcua_device(
    name: str,
    *,
    endpoint: str,
    mode: str,
    interval_ms: int,
    sim_machine: str = "M1",
    watchdog_s: float | None = None,
) -> str:
    """An OPC-UA device reading one simulated machine's run bit, fault code and counters."""
    ns = f"nsu={NAMESPACE_URI};s={sim_machine}"
    watchdog = f"watchdog_s = {watchdog_s}\n" if watchdog_s is not None else ""
    return f"""
[devices.{name}]
protocol = "opcua"
endpoint = "{endpoint}"
mode = "{mode}"
interval_ms = {interval_ms}
timeout_ms = 2000
{watchdog}
[devices.{name}.tags.running]
node = "{ns}.Running"

[devices.{name}.tags.fault_code]
node = "{ns}.FaultCode"

[devices.{name}.tags.good]
node = "{ns}.GoodCount"

[devices.{name}.tags.total]
node = "{ns}.TotalCount"
"""


def machine_section(
    machine: str,
    *,
    device: str,
    kpi: str,
    counter_bits: int = 32,
    signal_max_age_s: float | None = None,
) -> str:
    """``[machines.<machine>]`` on a device's four tags; ``kpi`` is its kpi table body."""
    max_age = f"signal_max_age_s = {signal_max_age_s}\n" if signal_max_age_s is not None else ""
    return f"""
[machines.{machine}]
run = "{device}.running"
fault = "{device}.fault_code"
good = "{device}.good"
total = "{device}.total"
{max_age}
[machines.{machine}.kpi]
counter_bits = {counter_bits}
{kpi}"""


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
    """One machine on Modbus TCP device ``plc``; ``kpi`` is the body of its kpi table."""
    return (
        agent_section(
            agent_id=agent_id,
            state=state,
            mqtt_port=mqtt_port,
            windows=windows,
            allowed_lateness_s=allowed_lateness_s,
            status_interval_s=status_interval_s,
        )
        + modbus_device("plc", modbus_port=modbus_port, poll_ms=poll_ms, counter_bits=counter_bits)
        + machine_section(machine, device="plc", kpi=kpi, counter_bits=counter_bits)
    )
