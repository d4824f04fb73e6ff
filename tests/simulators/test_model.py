"""The machine model: timelines, randomness, counters and determinism (pure, no sleeps)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from simulators.clock import ManualClock
from simulators.model import Machine, MachineState
from simulators.scenario import (
    Action,
    MachineSpec,
    OutageMode,
    Quirks,
    ScriptedEvent,
    Stochastic,
    load_scenario,
)
from simulators.truth import dumps


def _run(spec: MachineSpec, seed: int, steps: list[float]) -> list[dict[str, Any]]:
    clock = ManualClock()
    records: list[dict[str, Any]] = []
    m = Machine(spec, seed=seed, wall_ts=clock.wall_ts, record=records.append)
    for dt in steps:
        m.advance_to(clock.advance(dt))
    m.close()
    return records


def _intervals(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == "interval"]


def test_e2e_timeline() -> None:
    """The e2e scenario runs 30 s, is down with fault 42 for 20 s, then runs again."""
    spec = load_scenario("e2e").machines[0]
    iv = _intervals(_run(spec, 1, [1.0] * 80))
    assert [(r["state"], r["fault_code"], r["start_s"], r["end_s"]) for r in iv] == [
        ("running", 0, 0.0, 30.0),
        ("down", 42, 30.0, 50.0),
        ("running", 0, 50.0, 80.0),
    ]
    assert iv[1]["parts_good"] == 0
    assert 28 <= iv[0]["parts_good"] <= 30
    assert iv[2].get("open") is True
    assert iv[1]["start_ts"] == ManualClock().wall_ts(30.0)


def test_result_does_not_depend_on_step_size() -> None:
    """Advancing in 1 s steps or irregular steps gives identical records (event-driven model)."""
    spec = load_scenario("demo").machine("M3")
    a = _run(spec, 7, [1.0] * 7200)
    b = _run(spec, 7, [0.37, 13.0, 2.63, 600.0, 3584.0, 3000.0])
    assert [dumps(r) for r in a] == [dumps(r) for r in b]


def test_same_seed_same_history_other_seed_differs() -> None:
    """Same seed gives the same history; another seed a different one."""
    spec = load_scenario("microstops").machines[0]
    a = _run(spec, 1, [60.0] * 120)
    assert a == _run(spec, 1, [60.0] * 120)
    assert a != _run(spec, 2, [60.0] * 120)


def test_microstops_are_short_idle_stops_without_fault() -> None:
    """The micro-stop profile produces many short idle stops with fault code 0."""
    spec = load_scenario("microstops").machines[0]
    stops = [r for r in _intervals(_run(spec, 3, [60.0] * 240)) if r["state"] != "running"]
    assert len(stops) > 40  # ~30/h over 4 h of which most is running
    assert all(r["state"] == "idle" and r["reason"] == "microstop" for r in stops)
    assert all(r["fault_code"] == 0 for r in stops)
    mean = sum(r["end_s"] - r["start_s"] for r in stops) / len(stops)
    assert 8 < mean < 40


def test_breakdowns_use_configured_codes_and_changeovers_happen() -> None:
    """Breakdowns carry codes from the list; a changeover happens once per shift of running."""
    spec = load_scenario("breakdowns").machines[0]
    iv = _intervals(_run(spec, 5, [300.0] * 288))  # 24 h
    downs = [r for r in iv if r["state"] == "down"]
    assert downs
    assert {r["fault_code"] for r in downs} <= {17, 23, 42}
    assert any(r["state"] == "planned_stop" and r["reason"] == "changeover" for r in iv)


def test_counters_and_scrap() -> None:
    """Total = good + scrap parts made; scrap rate is roughly the configured one."""
    spec = MachineSpec(id="M", unit_id=1, ideal_cycle_s=1.0, scrap_rate=0.1)
    clock = ManualClock()
    m = Machine(spec, seed=1, wall_ts=clock.wall_ts)
    m.advance_to(10_000.0)
    assert m.total == m.good + m.scrap
    assert 9_500 <= m.total <= 10_500
    assert 0.07 < m.scrap / m.total < 0.13


def test_plc_restart_resets_counters_and_goes_silent() -> None:
    """A scripted PLC restart resets counters, is recorded, and silences comms meanwhile."""
    spec = MachineSpec(
        id="M",
        unit_id=1,
        ideal_cycle_s=1.0,
        cycle_jitter=0.0,
        quirks=Quirks(counter_start=500),
        events=(ScriptedEvent(at_s=10.5, action=Action.PLC_RESTART, duration_s=5.0),),
    )
    records: list[dict[str, Any]] = []
    clock = ManualClock()
    m = Machine(spec, seed=1, wall_ts=clock.wall_ts, record=records.append)
    m.advance_to(12.0)
    assert m.outage_mode is OutageMode.SILENT
    assert m.good == 2
    assert m.restart_count == 1
    m.advance_to(20.0)
    assert m.comms_ok
    restart = next(r for r in records if r["type"] == "restart")
    assert restart["good_before"] == 510
    outage = next(r for r in records if r["type"] == "outage")
    assert (outage["start_s"], outage["end_s"]) == (10.5, 15.5)


def test_restart_without_reset_keeps_counters() -> None:
    """With reset_on_restart = false a restart keeps the counter values."""
    spec = MachineSpec(
        id="M",
        unit_id=1,
        ideal_cycle_s=1.0,
        cycle_jitter=0.0,
        quirks=Quirks(reset_on_restart=False),
        events=(ScriptedEvent(at_s=5.5, action=Action.PLC_RESTART),),
    )
    m = Machine(spec, seed=1, wall_ts=ManualClock().wall_ts)
    m.advance_to(10.0)
    assert m.good == 10


def test_forced_fault_snapshot_and_alarm_word() -> None:
    """A forced fault shows in state, run bit, fault code, status word, alarm word and text."""
    spec = replace(load_scenario("e2e").machines[0], stochastic=Stochastic())
    m = Machine(spec, seed=1, wall_ts=ManualClock().wall_ts)
    m.advance_to(5.0)
    m.force_fault(42, 10.0)
    s = m.snapshot()
    assert s.state is MachineState.DOWN
    assert not s.running
    assert s.fault_code == 42
    assert s.alarm_word == 1 << 2
    assert s.status_word & 0b11 == 0b10
    assert s.status_text == "FAULT 42"
    assert s.speed == 0.0
    m.advance_to(15.0)
    assert m.snapshot().running
    assert m.snapshot().fault_code == 0


def test_unknown_fault_code_sets_alarm_bit_15_and_temperature_moves() -> None:
    """Codes outside the alarm table set bit 15; temperature falls while the machine is down."""
    spec = MachineSpec(id="M", unit_id=1)
    m = Machine(spec, seed=1, wall_ts=ManualClock().wall_ts)
    m.advance_to(3600.0)
    hot = m.snapshot().temperature
    m.force_fault(99, 7200.0)
    assert m.snapshot().alarm_word == 1 << 15
    m.advance_to(7200.0)
    assert m.snapshot().temperature < hot - 5


def test_states_from_force_state() -> None:
    """Idle, planned stop and power off set the state register and status text."""
    spec = MachineSpec(id="M", unit_id=1)
    m = Machine(spec, seed=1, wall_ts=ManualClock().wall_ts)
    m.force_state(Action.IDLE, 10.0, "blocked")
    assert (m.snapshot().state, m.snapshot().status_text) == (MachineState.IDLE, "BLOCKED")
    m.force_state(Action.PLANNED_STOP, 10.0, "maintenance")
    assert m.snapshot().state is MachineState.PLANNED_STOP
    m.force_state(Action.POWER_OFF, 10.0)
    assert m.snapshot().state is MachineState.OFF
    assert m.snapshot().status_word == 0
