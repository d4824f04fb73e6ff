"""``describe``: the register map and OPC-UA node ids of a scenario, for humans and the agent.

:func:`describe_table` prints one table per machine (Modbus table, address,
type, word order, meaning; OPC-UA node ids). :func:`describe_toml` prints a
ready-to-paste agent config: one ``[devices.<m>]`` Modbus block, one
``[devices.<m>ua]`` OPC-UA block and one ``[machines.<m>]`` mapping block per
machine, in the formats shared with the driver and calculator engineers.
Pure text generation: no sockets, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulators import NAMESPACE_URI
from simulators.registers import BIT_FIELDS, COUNTER_ADDRESS, REGISTER_FIELDS, STATUS_TEXT_CHARS
from simulators.scenario import Action, MachineSpec, Scenario

OPCUA_PATH = "/edge-sim/"


@dataclass(frozen=True, slots=True)
class UaVariable:
    """One OPC-UA variable of a machine object."""

    name: str
    type: str
    description: str


#: Variables of every machine object (node id ``ns=<idx>;s=<machine>.<name>``).
UA_VARIABLES: tuple[UaVariable, ...] = (
    UaVariable(
        "State", "UInt16", "machine state enum (0 off, 1 running, 2 idle, 3 down, 4 planned)"
    ),
    UaVariable("Running", "Boolean", "run bit"),
    UaVariable("FaultCode", "UInt16", "active fault code, 0 = none"),
    UaVariable("AlarmWord", "UInt16", "alarm bit field"),
    UaVariable("StatusWord", "UInt16", "bit 0 run, 1 fault, 2 idle, 3 planned stop, 4 powered"),
    UaVariable("GoodCount", "UInt32", "good parts (UInt16 when counter_bits = 16; wraps)"),
    UaVariable("ScrapCount", "UInt32", "scrap parts (UInt16 when counter_bits = 16; wraps)"),
    UaVariable("TotalCount", "UInt32", "total parts (UInt16 when counter_bits = 16; wraps)"),
    UaVariable("Speed", "Float", "parts per minute"),
    UaVariable("Temperature", "Double", "°C"),
    UaVariable("CycleTime", "Float", "last cycle time, s"),
    UaVariable("StatusText", "String", "status text"),
    UaVariable("RestartCount", "UInt16", "PLC restarts"),
)

#: Variables that also exist under a numeric node id (``ns=<idx>;i=<n>``).
UA_NUMERIC = ("Running", "FaultCode", "GoodCount", "TotalCount")


def numeric_id(ordinal: int, name: str) -> int:
    """Numeric node id of a mirrored variable: 1000 * machine ordinal (1-based) + index."""
    return 1000 * ordinal + UA_NUMERIC.index(name) + 1


def device_name(spec: MachineSpec) -> str:
    """Agent device name for a machine (lower-case id)."""
    return spec.id.lower()


def _tag(lines: list[str], dev: str, tag: str, **kv: object) -> None:
    lines.append(f"[devices.{dev}.tags.{tag}]")
    for k, v in kv.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    lines.append("")


def modbus_block(
    spec: MachineSpec,
    *,
    host: str,
    modbus_port: int,
    rtu_port: str | None = None,
    baudrate: int = 19200,
) -> str:
    """The ``[devices.<m>]`` Modbus block (TCP, or RTU when ``rtu_port`` is given)."""
    dev = device_name(spec)
    q = spec.quirks
    wo = q.word_order.value
    out = [f"## {spec.id}: simulated machine, unit id {spec.unit_id}."]
    out.append(f"[devices.{dev}]")
    if rtu_port is None:
        out += ['protocol = "modbus_tcp"', f'endpoint = "{host}:{modbus_port}"']
    else:
        out += [
            'protocol = "modbus_rtu"',
            f'serial_port = "{rtu_port}"',
            f"baudrate = {baudrate}",
            'parity = "N"',
            "stopbits = 1",
        ]
    out += [f"unit_id = {spec.unit_id}", "interval_ms = 1000", 'addressing = "zero"']
    out += [f'word_order = "{wo}"', ""]
    if q.holes:
        out.insert(1, f"## Unmapped (illegal address) holding registers: {list(q.holes)}.")
    _tag(out, dev, "running", table="coil", address=0, type="bool")
    _tag(out, dev, "fault_code", table="holding", address=2, type="uint16")
    _tag(out, dev, "state", table="holding", address=0, type="uint16")
    _tag(out, dev, "fault_active", table="holding", address=1, type="bit", bit=1)
    _tag(out, dev, "alarm_word", table="holding", address=3, type="uint16")
    bits = q.counter_bits
    ctype = f"uint{bits}"
    for name in ("good", "scrap", "total"):
        addr = COUNTER_ADDRESS[bits][name]
        if bits == 16:
            _tag(out, dev, name, table="holding", address=addr, type=ctype)
        else:
            _tag(out, dev, name, table="holding", address=addr, type=ctype, word_order=wo)
    _tag(out, dev, "speed", table="holding", address=20, type="float32", word_order=wo)
    _tag(
        out,
        dev,
        "temperature",
        table="holding",
        address=22,
        type="float64",
        word_order=wo,
        unit="°C",
    )
    _tag(
        out,
        dev,
        "status_text",
        table="holding",
        address=30,
        type="string",
        length=STATUS_TEXT_CHARS,
    )
    return "\n".join(out)


def opcua_block(spec: MachineSpec, *, host: str, opcua_port: int) -> str:
    """The ``[devices.<m>ua]`` OPC-UA block."""
    dev = device_name(spec) + "ua"
    out = [
        f"## {spec.id} over OPC-UA.",
        f"[devices.{dev}]",
        'protocol = "opcua"',
        f'endpoint = "opc.tcp://{host}:{opcua_port}{OPCUA_PATH}"',
        'mode = "subscribe"',
        "interval_ms = 1000",
        "",
    ]
    for tag, var in (
        ("running", "Running"),
        ("fault_code", "FaultCode"),
        ("state", "State"),
        ("good", "GoodCount"),
        ("scrap", "ScrapCount"),
        ("total", "TotalCount"),
        ("speed", "Speed"),
        ("temperature", "Temperature"),
    ):
        out += [
            f"[devices.{dev}.tags.{tag}]",
            f'node = "nsu={NAMESPACE_URI};s={spec.id}.{var}"',
            "",
        ]
    return "\n".join(out)


def machine_block(spec: MachineSpec, device: str | None = None) -> str:
    """The ``[machines.<m>]`` mapping block, pointing at ``device`` (default the Modbus one)."""
    m = device_name(spec)
    dev = device or m
    return "\n".join(
        [
            f"[machines.{m}]",
            f'run = "{dev}.running"',
            f'fault = "{dev}.fault_code"',
            f'good = "{dev}.good"',
            f'total = "{dev}.total"',
            f"[machines.{m}.kpi]",
            f"ideal_cycle_time_s = {spec.ideal_cycle_s}",
            "",
        ]
    )


def describe_toml(
    scenario: Scenario,
    *,
    host: str = "127.0.0.1",
    modbus_port: int = 5020,
    opcua_port: int = 4840,
    rtu_port: str | None = None,
    baudrate: int = 19200,
) -> str:
    """A ready-to-paste agent config for every machine of the scenario."""
    parts = [f"## Generated by edge-agent-sim describe --scenario {scenario.name}", ""]
    for spec in scenario.machines:
        parts.append(
            modbus_block(
                spec, host=host, modbus_port=modbus_port, rtu_port=rtu_port, baudrate=baudrate
            )
        )
        parts.append(opcua_block(spec, host=host, opcua_port=opcua_port))
        parts.append(machine_block(spec))
    return "\n".join(parts)


def describe_table(scenario: Scenario) -> str:
    """Human-readable register map (shared by all machines), then each machine's specifics."""
    out = [f"Scenario {scenario.name}: {scenario.description}", ""]
    out.append("Modbus register map of every machine (zero-based PDU addresses):")
    out.append(f"  {'table':<16}{'address':>8}  {'type':<8}  meaning")
    for f in BIT_FIELDS:
        out.append(f"  {'coil/discrete':<16}{f.address:>8}  {f.type:<8}  {f.description}")
    for f in REGISTER_FIELDS:
        out.append(f"  {'holding/input':<16}{f.address:>8}  {f.type:<8}  {f.description}")
    out.append("")
    for ordinal, spec in enumerate(scenario.machines, start=1):
        q = spec.quirks
        out.append(
            f"Machine {spec.id}  unit_id={spec.unit_id}  word_order={q.word_order.value}  "
            f"counter_bits={q.counter_bits}  ideal_cycle_s={spec.ideal_cycle_s}"
        )
        if q.holes:
            out.append(f"  unmapped holding/input registers (exception 2): {list(q.holes)}")
        if q.response_delay_ms:
            out.append(f"  every reply delayed {q.response_delay_ms} ms")
        if q.busy_rate:
            out.append(f"  {q.busy_rate:.0%} of requests answered with exception 6 (busy)")
        for ev in spec.events:
            out.append(
                f"  at t={ev.at_s:g} s: {ev.action.value} for {ev.duration_s:g} s"
                + (f" (code {ev.code})" if ev.code else "")
                + (f" ({ev.reason})" if ev.reason else "")
                + (f" (mode {ev.mode.value})" if ev.action is Action.COMMS_OUTAGE else "")
            )
        out.append(f"  OPC-UA object {spec.id} in namespace {NAMESPACE_URI}:")
        for v in UA_VARIABLES:
            node = f"nsu={NAMESPACE_URI};s={spec.id}.{v.name}"
            extra = f"  (also i={numeric_id(ordinal, v.name)})" if v.name in UA_NUMERIC else ""
            out.append(f"    {node:<52} {v.type:<8} {v.description}{extra}")
        out.append("")
    return "\n".join(out)
