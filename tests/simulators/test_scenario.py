"""Scenario loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators.scenario import (
    Action,
    OutageMode,
    ScenarioError,
    WordOrder,
    list_scenarios,
    load_scenario,
)

REQUIRED = {"steady", "microstops", "breakdowns", "rollover", "demo", "e2e"}


def test_required_scenarios_are_bundled() -> None:
    """Every scenario the task names ships in simulators/scenarios."""
    assert set(list_scenarios()) >= REQUIRED


@pytest.mark.parametrize("name", sorted(list_scenarios()))
def test_bundled_scenarios_validate(name: str) -> None:
    """Every bundled scenario loads without errors and has at least one machine."""
    sc = load_scenario(name)
    assert sc.machines
    assert sc.name == name


def test_e2e_timeline_is_fault_42_at_30_for_20() -> None:
    """The e2e scenario is the scripted timeline the lead's end-to-end test relies on."""
    sc = load_scenario("e2e")
    (m,) = sc.machines
    (ev,) = m.events
    assert (ev.action, ev.at_s, ev.code, ev.duration_s) == (Action.FAULT, 30.0, 42, 20.0)


def test_demo_has_three_different_machines() -> None:
    """The demo scenario has one steady machine, one with micro-stops, one with breakdowns."""
    m1, m2, m3 = load_scenario("demo").machines
    assert m1.stochastic.mtbf_s == 0
    assert m1.stochastic.microstops_per_h == 0
    assert m2.stochastic.microstops_per_h > 0
    assert m3.stochastic.mtbf_s > 0
    assert len({m.unit_id for m in (m1, m2, m3)}) == 3


def test_quirks_are_parsed() -> None:
    """Quirk keys end up typed in the machine spec."""
    sc = load_scenario("quirks")
    assert sc.machine("CDAB").quirks.word_order is WordOrder.CDAB
    assert sc.machine("HOLE").quirks.holes == (13,)
    assert sc.machine("SLOW").quirks.response_delay_ms == 300
    flaky = sc.machine("FLAKY").events
    assert flaky[1].mode is OutageMode.CLOSE


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.toml"
    p.write_text(text)
    return p


def test_errors_name_file_and_key_and_are_all_reported(tmp_path: Path) -> None:
    """A bad file reports every problem with file, dotted key path and expectation."""
    p = _write(
        tmp_path,
        """
[machines.M1]
unit_id = 300
ideal_cycle_s = "fast"
colour = "red"
[machines.M1.quirks]
word_order = "ABDC"
[[machines.M1.events]]
at_s = 10
action = "explode"
duration_s = 5
""",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(p))
    issues = info.value.issues
    text = "\n".join(issues)
    assert f"{p}: machines.M1.unit_id: expected an integer in [1, 247], got 300" in text
    assert f"{p}: machines.M1.ideal_cycle_s: expected a number, got a string" in text
    assert f"{p}: machines.M1.colour: unknown key" in text
    assert f"{p}: machines.M1.quirks.word_order: expected one of ABCD, CDAB, BADC, DCBA" in text
    assert f"{p}: machines.M1.events[0].action: expected one of fault" in text
    assert len(issues) == 5


def test_fault_needs_code_and_duration(tmp_path: Path) -> None:
    """A fault event without a code or duration is rejected with the event's index."""
    p = _write(
        tmp_path,
        """
[machines.M1]
[[machines.M1.events]]
at_s = 10
action = "fault"
""",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(p))
    text = str(info.value)
    assert "machines.M1.events[0].code: a fault needs a non-zero code" in text
    assert "machines.M1.events[0].duration_s: expected a positive duration" in text


def test_duplicate_unit_ids_and_no_machines(tmp_path: Path) -> None:
    """Two machines on one unit id are an error; so is a file without machines."""
    p = _write(tmp_path, "[machines.A]\nunit_id = 1\n[machines.B]\nunit_id = 1\n")
    with pytest.raises(ScenarioError, match="unit_id 1 is used by more than one machine"):
        load_scenario(str(p))
    p2 = _write(tmp_path, '[scenario]\nname = "x"\n')
    with pytest.raises(ScenarioError, match="machines: required"):
        load_scenario(str(p2))


def test_invalid_toml_and_unknown_name(tmp_path: Path) -> None:
    """Broken TOML and unknown bundled names give a ScenarioError, not a traceback."""
    p = _write(tmp_path, "[machines.M1\n")
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(str(p))
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("nonexistent-scenario")


def test_opcua_publish_stalls_are_parsed_and_checked(tmp_path: Path) -> None:
    """``[opcua] publish_stalls``: sorted spans; bad, overlapping or unknown keys are errors."""
    flat = load_scenario("flat")
    assert [(s.at_s, s.end_s) for s in flat.opcua.publish_stalls] == [(150.0, 250.0)]
    assert not flat.opcua.stalled(149.9)
    assert flat.opcua.stalled(150.0)
    assert not flat.opcua.stalled(250.0)
    assert load_scenario("steady").opcua.publish_stalls == ()
    p = _write(
        tmp_path,
        """
[machines.M1]
[opcua]
colour = "red"
[[opcua.publish_stalls]]
at_s = 50
duration_s = 20
[[opcua.publish_stalls]]
at_s = 10
duration_s = 45
[[opcua.publish_stalls]]
at_s = 100
""",
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(p))
    text = str(info.value)
    assert "opcua.colour: unknown key" in text
    assert "opcua.publish_stalls[2].duration_s: required" in text
    assert "opcua.publish_stalls: stalls overlap at 50 s" in text
