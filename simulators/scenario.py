"""Scenario files: TOML in, validated frozen dataclasses out.

A scenario names one or more machines (``[machines.<ID>]``), each with its
cycle, scrap rate, PLC quirks (``[machines.<ID>.quirks]``), an optional
stochastic profile (``[machines.<ID>.stochastic]``) and an optional scripted
timeline (``[[machines.<ID>.events]]``), plus optional quirks of the OPC-UA
server as a whole (``[opcua]``: publish stalls). :func:`load_scenario` reads a file
and reports *every* mistake at once in a :class:`ScenarioError` whose lines
name the file, the dotted key path and what was expected; unknown keys are
errors. This module only parses and validates: it runs nothing.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli

from simulators.tomlreader import TableReader, kind

SCENARIO_DIR = Path(__file__).with_name("scenarios")


class WordOrder(enum.Enum):
    """Byte layout of 32/64-bit values across 16-bit registers (A = most significant byte)."""

    ABCD = "ABCD"  # big-endian words, big-endian bytes
    CDAB = "CDAB"  # least significant word first ("word swap")
    BADC = "BADC"  # big-endian words, bytes swapped inside each word
    DCBA = "DCBA"  # fully little-endian


class Action(enum.Enum):
    """What a scripted event does."""

    FAULT = "fault"  # down with a fault code for duration_s
    IDLE = "idle"  # starved or blocked for duration_s
    PLANNED_STOP = "planned_stop"  # changeover or maintenance for duration_s
    POWER_OFF = "power_off"  # machine off (PLC still answers) for duration_s
    PLC_RESTART = "plc_restart"  # counters reset; PLC silent for duration_s (may be 0)
    COMMS_OUTAGE = "comms_outage"  # front ends stop answering for duration_s


class OutageMode(enum.Enum):
    """How a device behaves while its communication is out."""

    SILENT = "silent"  # requests get no reply (client times out)
    CLOSE = "close"  # connections are closed on the next request


IDLE_REASONS = ("starved", "blocked")
PLANNED_REASONS = ("changeover", "maintenance")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedEvent:
    """One ``[[machines.<ID>.events]]`` entry."""

    at_s: float
    action: Action
    duration_s: float = 0.0
    code: int = 0
    reason: str = ""
    mode: OutageMode = OutageMode.SILENT


@dataclass(frozen=True, slots=True, kw_only=True)
class Quirks:
    """Switchable PLC quirks of one machine."""

    word_order: WordOrder = WordOrder.ABCD
    counter_bits: int = 32
    counter_start: int = 0
    reset_on_restart: bool = True
    holes: tuple[int, ...] = ()
    response_delay_ms: int = 0
    busy_rate: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stochastic:
    """Random behaviour; a rate or mean of 0 disables that kind of event."""

    mtbf_s: float = 0.0
    mttr_s: float = 300.0
    fault_codes: tuple[int, ...] = (1,)
    microstops_per_h: float = 0.0
    microstop_mean_s: float = 15.0
    idle_per_h: float = 0.0
    idle_mean_s: float = 60.0
    changeovers_per_shift: int = 0
    shift_s: float = 28_800.0
    changeover_s: float = 900.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineSpec:
    """One simulated machine."""

    id: str
    unit_id: int
    ideal_cycle_s: float = 2.0
    cycle_jitter: float = 0.05
    scrap_rate: float = 0.0
    ambient_temp_c: float = 22.0
    running_temp_c: float = 65.0
    alarm_bits: tuple[tuple[int, int], ...] = ()
    quirks: Quirks = field(default_factory=Quirks)
    stochastic: Stochastic = field(default_factory=Stochastic)
    events: tuple[ScriptedEvent, ...] = ()

    def alarm_bit(self, code: int) -> int:
        """Alarm-word bit for a fault code (bit 15 = any code not in the table)."""
        for c, bit in self.alarm_bits:
            if c == code:
                return bit
        return 15


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishStall:
    """A span of sim time in which the OPC-UA server answers no Publish request."""

    at_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        """Sim time at which publishing resumes."""
        return self.at_s + self.duration_s


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcuaQuirks:
    """Quirks of the OPC-UA server as a whole (``[opcua]``), not of one machine.

    ``publish_stalls``: spans in which every subscription of the server stays silent (no
    data change, no keepalive) while the session, reads and the server-state node keep
    answering: the "connected but silent" server.
    """

    publish_stalls: tuple[PublishStall, ...] = ()

    def stalled(self, t: float) -> bool:
        """Whether publishing is stalled at sim time ``t``."""
        return any(s.at_s <= t < s.end_s for s in self.publish_stalls)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A validated scenario file."""

    name: str
    description: str
    source: str
    machines: tuple[MachineSpec, ...]
    opcua: OpcuaQuirks = field(default_factory=OpcuaQuirks)

    def machine(self, machine_id: str) -> MachineSpec:
        """The machine with this id (KeyError when absent)."""
        for m in self.machines:
            if m.id == machine_id:
                return m
        raise KeyError(machine_id)


class ScenarioError(ValueError):
    """A scenario file is invalid; ``issues`` lists every ``file: key: problem``."""

    def __init__(self, issues: list[str]) -> None:
        super().__init__("invalid scenario:\n  " + "\n  ".join(issues))
        self.issues = issues


def _quirks(r: TableReader | None) -> Quirks:
    if r is None:
        return Quirks()
    bits = r.integer("counter_bits", 32, lo=16, hi=32)
    if bits not in (16, 32):
        r.err("counter_bits", f"expected 16 or 32, got {bits}")
        bits = 32
    q = Quirks(
        word_order=r.choice("word_order", WordOrder, WordOrder.ABCD),
        counter_bits=bits,
        counter_start=r.integer("counter_start", 0, lo=0, hi=2**64 - 1),
        reset_on_restart=r.boolean("reset_on_restart", True),
        holes=r.int_list("holes", lo=0, hi=65535) or (),
        response_delay_ms=r.integer("response_delay_ms", 0, lo=0, hi=60_000),
        busy_rate=r.number("busy_rate", 0.0, lo=0.0, hi=1.0),
    )
    r.finish()
    return q


def _stochastic(r: TableReader | None) -> Stochastic:
    if r is None:
        return Stochastic()
    s = Stochastic(
        mtbf_s=r.number("mtbf_s", 0.0, lo=0.0),
        mttr_s=r.number("mttr_s", 300.0, lo=0.001),
        fault_codes=r.int_list("fault_codes", lo=1, hi=65535) or (1,),
        microstops_per_h=r.number("microstops_per_h", 0.0, lo=0.0, hi=3600.0),
        microstop_mean_s=r.number("microstop_mean_s", 15.0, lo=0.001),
        idle_per_h=r.number("idle_per_h", 0.0, lo=0.0, hi=3600.0),
        idle_mean_s=r.number("idle_mean_s", 60.0, lo=0.001),
        changeovers_per_shift=r.integer("changeovers_per_shift", 0, lo=0, hi=100),
        shift_s=r.number("shift_s", 28_800.0, lo=1.0),
        changeover_s=r.number("changeover_s", 900.0, lo=0.001),
    )
    r.finish()
    return s


def _opcua(r: TableReader | None) -> OpcuaQuirks:
    if r is None:
        return OpcuaQuirks()
    stalls: list[PublishStall] = []
    for item in r.tables("publish_stalls"):
        at = item.number("at_s", math.nan, lo=0.0)
        if item.get("at_s") is None:
            item.err("at_s", "required: sim time in seconds")
        duration = item.number("duration_s", math.nan, lo=0.0)
        if item.get("duration_s") is None:
            item.err("duration_s", "required: how long publishing stalls, in sim seconds")
        elif duration == 0:
            item.err("duration_s", "expected a positive duration")
        item.finish()
        if not math.isnan(at) and not math.isnan(duration):
            stalls.append(PublishStall(at_s=at, duration_s=duration))
    r.finish()
    stalls.sort(key=lambda s: s.at_s)
    for before, after in itertools.pairwise(stalls):
        if after.at_s < before.end_s:
            r.err("publish_stalls", f"stalls overlap at {after.at_s:g} s")
    return OpcuaQuirks(publish_stalls=tuple(stalls))


def _event(r: TableReader) -> ScriptedEvent | None:
    at = r.number("at_s", math.nan, lo=0.0)
    if r.get("at_s") is None:
        r.err("at_s", "required: sim time in seconds")
    before = len(r.issues)
    action = r.choice("action", Action, Action.FAULT)
    if r.get("action") is None:
        r.err("action", f"required: one of {', '.join(a.value for a in Action)}")
    if len(r.issues) > before:
        # Without a valid action the other keys cannot be checked meaningfully.
        for k in ("duration_s", "code", "reason", "mode"):
            r.get(k)
        r.finish()
        return None
    duration = r.number("duration_s", 0.0, lo=0.0)
    code = r.integer("code", 0, lo=0, hi=65535)
    reason = r.string("reason", "")
    mode = r.choice("mode", OutageMode, OutageMode.SILENT)
    if action is Action.FAULT and code == 0:
        r.err("code", "a fault needs a non-zero code")
    if action is not Action.PLC_RESTART and duration <= 0:
        r.err("duration_s", "expected a positive duration")
    if action is Action.IDLE:
        reason = reason or "starved"
        if reason not in IDLE_REASONS:
            r.err("reason", f"expected one of {', '.join(IDLE_REASONS)}, got {reason!r}")
    elif action is Action.PLANNED_STOP:
        reason = reason or "changeover"
        if reason not in PLANNED_REASONS:
            r.err("reason", f"expected one of {', '.join(PLANNED_REASONS)}, got {reason!r}")
    r.finish()
    if math.isnan(at):
        return None
    return ScriptedEvent(
        at_s=at, action=action, duration_s=duration, code=code, reason=reason, mode=mode
    )


def _machine(r: TableReader, machine_id: str, ordinal: int) -> MachineSpec:
    alarm: list[tuple[int, int]] = []
    at = r.table("alarm_bits")
    if at is not None:
        for k in at.data:
            at.used.add(k)
            v = at.data[k]
            if not k.isdigit() or not 1 <= int(k) <= 65535:
                at.err(k, "expected a fault code (1..65535) as key")
            elif isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 15:
                at.err(k, "expected a bit number 0..15")
            else:
                alarm.append((int(k), v))
    events = tuple(e for e in (_event(x) for x in r.tables("events")) if e is not None)
    spec = MachineSpec(
        id=machine_id,
        unit_id=r.integer("unit_id", ordinal, lo=1, hi=247),
        ideal_cycle_s=r.number("ideal_cycle_s", 2.0, lo=0.01, hi=86_400.0),
        cycle_jitter=r.number("cycle_jitter", 0.05, lo=0.0, hi=0.9),
        scrap_rate=r.number("scrap_rate", 0.0, lo=0.0, hi=1.0),
        ambient_temp_c=r.number("ambient_temp_c", 22.0, lo=-50.0, hi=200.0),
        running_temp_c=r.number("running_temp_c", 65.0, lo=-50.0, hi=500.0),
        alarm_bits=tuple(alarm),
        quirks=_quirks(r.table("quirks")),
        stochastic=_stochastic(r.table("stochastic")),
        events=tuple(sorted(events, key=lambda e: e.at_s)),
    )
    r.finish()
    return spec


def parse_scenario(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate parsed TOML; raise :class:`ScenarioError` listing every problem."""
    issues: list[str] = []
    root = TableReader(data, "", issues, source)
    head = root.table("scenario")
    name = Path(source).stem
    description = ""
    if head is not None:
        name = head.string("name", name)
        description = head.string("description", "")
        head.finish()
    machines: list[MachineSpec] = []
    mt = root.table("machines")
    if mt is None or not mt.data:
        root.err("machines", "required: at least one [machines.<ID>] table")
    else:
        for i, (mid, body) in enumerate(mt.data.items(), start=1):
            mt.used.add(mid)
            if not isinstance(body, dict):
                mt.err(mid, f"expected a table, got {kind(body)}")
                continue
            if not mid.replace("_", "").isalnum():
                mt.err(mid, "machine ids are letters, digits and underscores")
            machines.append(_machine(TableReader(body, mt.key(mid), issues, source), mid, i))
    opcua = _opcua(root.table("opcua"))
    root.finish()
    units = [m.unit_id for m in machines]
    for u in sorted({u for u in units if units.count(u) > 1}):
        issues.append(f"{source}: machines: unit_id {u} is used by more than one machine")
    if issues:
        raise ScenarioError(issues)
    return Scenario(
        name=name,
        description=description,
        source=source,
        machines=tuple(machines),
        opcua=opcua,
    )


def list_scenarios() -> list[str]:
    """Names of the bundled scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def resolve(name_or_path: str) -> Path:
    """A bundled scenario name or a path to a TOML file -> the file path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    bundled = SCENARIO_DIR / f"{name_or_path}.toml"
    if not bundled.exists():
        raise ScenarioError(
            [f"{name_or_path}: no such scenario (bundled: {', '.join(list_scenarios())})"]
        )
    return bundled


def load_scenario(name_or_path: str) -> Scenario:
    """Load and validate a bundled scenario by name, or any scenario file by path."""
    path = resolve(name_or_path)
    try:
        with path.open("rb") as f:
            data = tomli.load(f)
    except OSError as exc:
        raise ScenarioError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except tomli.TOMLDecodeError as exc:
        raise ScenarioError([f"{path}: not valid TOML: {exc}"]) from exc
    return parse_scenario(data, str(path))
