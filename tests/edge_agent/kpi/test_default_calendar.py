"""The default calendar (kpi-spec §3.4): no shifts and no planned windows = planned 24/7."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.contracts.model import CalendarKind, Contract, ServiceCalendar
from edge_agent.contracts.service import service_profile
from edge_agent.kpi import KpiProfile, Sample, compute_records, parse_profile, profile_hash
from edge_agent.kpi.calendar import Planner
from edge_agent.kpi.profile import Shift

T0 = 1_715_580_000  # 2024-05-13T06:00:00Z


def _parse(config: dict[str, Any]) -> KpiProfile:
    issues = Issues("t")
    profile = parse_profile(Table(config, "", issues))
    issues.raise_if_any()
    return profile


def test_neither_key_plans_around_the_clock_and_says_so() -> None:
    """Every instant is planned and every record carries calendar_24_7."""
    profile = _parse({"ideal_cycle_time_s": 1.0})
    assert profile.always_planned
    samples = [Sample(t=T0 + t, run=True, good=t, total=t) for t in range(0, 3601, 60)]
    rec = compute_records(profile, samples, [("H", T0, T0 + 3600)])["H"].as_dict()
    assert rec["planned_time_s"] == 3600.0
    assert rec["availability"] == 1.0
    assert "calendar_24_7" in rec["flags"]
    assert "no_planned_time" not in rec["flags"]


def test_exclusions_still_apply_to_the_default_calendar() -> None:
    """Declared maintenance is removed from the 24/7 plan."""
    profile = _parse(
        {
            "ideal_cycle_time_s": 1.0,
            "exclusions": [{"start": "2024-05-13T06:00:00Z", "end": "2024-05-13T06:30:00Z"}],
        }
    )
    assert Planner(profile).planned_length(T0 * 1000, (T0 + 3600) * 1000) == 1800 * 1000


@pytest.mark.parametrize(
    ("config", "planned_s"),
    [({"planned_windows": []}, 0.0), ({"shifts": [{"start": "06:00", "end": "06:30"}]}, 1800.0)],
)
def test_a_declared_key_is_the_plan(config: dict[str, Any], planned_s: float) -> None:
    """planned_windows = [] plans nothing (stated, never by omission); shifts plan themselves."""
    profile = _parse({"ideal_cycle_time_s": 1.0, **config})
    assert not profile.always_planned
    rec = compute_records(profile, [], [("H", T0, T0 + 3600)])["H"].as_dict()
    assert rec["planned_time_s"] == planned_s
    assert "calendar_24_7" not in rec["flags"]


def test_profile_json_round_trips_with_its_hash() -> None:
    """The evidence form of a 24/7 profile reads back as 24/7 (bundles re-check the hash)."""
    for config in ({}, {"planned_windows": []}):
        profile = _parse({"ideal_cycle_time_s": 1.0, **config})
        again = _parse(profile.as_json())
        assert again == profile
        assert profile_hash(again) == profile_hash(profile)
    assert profile_hash(_parse({"ideal_cycle_time_s": 1.0})) != profile_hash(
        _parse({"ideal_cycle_time_s": 1.0, "planned_windows": []})
    )


def test_a_contracts_own_hours_replace_the_default() -> None:
    """A contract on 'shifts' plans its shifts, not the machine's 24/7 default."""
    machine = _parse({"ideal_cycle_time_s": 1.0})
    calendar = ServiceCalendar(
        kind=CalendarKind.SHIFTS, shifts=(Shift(name="A", start_min=360, end_min=420),)
    )
    contract = cast("Contract", SimpleNamespace(calendar=calendar, timezone="UTC"))
    service = service_profile(contract, machine)
    assert not service.always_planned
    assert Planner(service).planned_length(T0 * 1000, (T0 + 7200) * 1000) == 3600 * 1000
