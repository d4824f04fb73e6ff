"""Profile parsing through configkit: defaults, every validation error path, the hash."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.errors import ConfigError
from edge_agent.kpi import SPEC_VERSION, KpiProfile, parse_profile, profile_hash
from edge_agent.kpi.timeutil import parse_instant


def _parse(data: dict[str, Any], path: str = "machines.press1.kpi") -> KpiProfile:
    issues = Issues("agent.toml")
    profile = parse_profile(Table(data, path, issues))
    issues.raise_if_any()
    return profile


def _errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(data)
    return [str(i) for i in info.value.issues]


def test_defaults_are_the_spec_defaults() -> None:
    """Only ideal_cycle_time_s is required; the other keys take the spec §3.1 defaults."""
    p = _parse({"ideal_cycle_time_s": 2})
    assert (p.micro_stop_threshold_s, p.max_gap_s, p.counter_bits, p.wrap_rate_factor) == (
        120,
        3600,
        32,
        2.0,
    )
    assert (p.min_coverage, p.clock_step_tolerance_s, p.timezone) == (0.95, 2.0, "UTC")
    assert p.planned_windows == p.shifts == p.exclusions == p.customer_fault_codes == ()


def test_full_profile() -> None:
    """Every key is read: windows, shifts with days, exclusions with reason, code ranges."""
    p = _parse(
        {
            "ideal_cycle_time_s": 1.5,
            "timezone": "Europe/Paris",
            "planned_windows": [
                {"start": "2024-05-13T06:00:00Z", "end": "2024-05-13T14:00:00+00:00"}
            ],
            "shifts": [
                {"name": "N", "start": "22:00", "end": "06:00", "days": ["mon", "tue"]},
                {"start": "06:00", "end": "14:00"},
            ],
            "exclusions": [
                {"start": "2024-05-13T10:00:00Z", "end": "2024-05-13T10:30:00Z", "reason": "PM"}
            ],
            "sla": {"customer_fault_codes": [[100, 199], 42]},
        }
    )
    assert p.planned_windows[0].end_ms == parse_instant("2024-05-13T14:00:00Z")
    assert [(s.name, s.start_min, s.end_min, sorted(s.days)) for s in p.shifts] == [
        ("N", 1320, 360, [0, 1]),
        ("B", 360, 840, list(range(7))),
    ]
    assert p.exclusions[0].reason == "PM"
    assert p.customer_fault_codes == ((100, 199), (42, 42))
    assert p.is_customer_code(150)
    assert p.is_customer_code(42)
    assert not p.is_customer_code(200)


def test_every_error_names_its_key_path() -> None:
    """All problems are reported at once, each with file and dotted key path."""
    errors = _errors(
        {
            "ideal_cycle_time_s": 0,
            "micro_stop_threshold_s": "2 min",
            "counter_bits": 65,
            "min_coverage": 1.5,
            "timezone": "Europe/Pariss",
            "planned_windows": [{"start": "2024-05-13T06:00:00", "end": "2024-05-13T05:00:00Z"}],
            "shifts": [{"start": "6:00", "end": "14:00", "days": ["monday"], "extra": 1}],
            "exclusions": [{"start": "2024-05-13T10:00:00Z", "end": "2024-05-13T09:00:00Z"}],
            "sla": {"customer_fault_codes": [[9, 1], "x"]},
            "allowed_lateness_s": 60,
        }
    )
    text = "\n".join(errors)
    for where in (
        "agent.toml: machines.press1.kpi.ideal_cycle_time_s: expected a number > 0",
        "machines.press1.kpi.micro_stop_threshold_s: expected a number >= 0",
        "machines.press1.kpi.counter_bits: expected an integer from 1 to 64",
        "machines.press1.kpi.min_coverage: expected a number from 0 to 1",
        "machines.press1.kpi.timezone: expected an IANA time zone",
        "machines.press1.kpi.planned_windows[0].start: expected an ISO 8601 UTC instant",
        "machines.press1.kpi.shifts[0].start: expected a local time 'HH:MM'",
        "machines.press1.kpi.shifts[0].days[0]: expected weekday names",
        "machines.press1.kpi.shifts[0].extra: unknown key",
        "machines.press1.kpi.exclusions[0].end: must be after start",
        "machines.press1.kpi.sla.customer_fault_codes[0]",
        "machines.press1.kpi.sla.customer_fault_codes[1]",
        "machines.press1.kpi.allowed_lateness_s: unknown key",
    ):
        assert where in text, where


def test_missing_ideal_cycle_time_and_duplicate_shift_names() -> None:
    """A missing required key and a duplicate shift name are errors; end == start is allowed."""
    errors = _errors(
        {
            "shifts": [
                {"name": "A", "start": "06:00", "end": "06:00"},
                {"name": "A", "start": "07:00", "end": "08:00"},
            ]
        }
    )
    text = "\n".join(errors)
    assert "ideal_cycle_time_s: missing" in text
    assert "shifts[0]" not in text  # end == start: a 24 h shift (spec 3.1: end <= start = next day)
    assert "duplicate shift name 'A'" in text


def test_toml_datetimes_are_accepted() -> None:
    """Offset datetimes parsed by the TOML reader are accepted like ISO strings."""
    import datetime as dt

    start = dt.datetime(2024, 5, 13, 6, tzinfo=dt.timezone.utc)
    p = _parse(
        {
            "ideal_cycle_time_s": 1,
            "planned_windows": [{"start": start, "end": start + dt.timedelta(hours=8)}],
        }
    )
    assert p.planned_windows[0].end_ms - p.planned_windows[0].start_ms == 8 * 3600 * 1000


def test_profile_hash_is_stable_and_sensitive() -> None:
    """Equal parameters give the same hash; any parameter change gives another one."""
    a = _parse({"ideal_cycle_time_s": 2})
    assert profile_hash(a) == profile_hash(_parse({"ideal_cycle_time_s": 2.0, "max_gap_s": 3600}))
    assert profile_hash(a) != profile_hash(_parse({"ideal_cycle_time_s": 2, "max_gap_s": 3599}))
    assert len(profile_hash(a)) == 64
    assert SPEC_VERSION


def test_profile_rejects_non_positive_cycle_time_directly() -> None:
    """Constructing a profile in code also enforces ideal_cycle_time_s > 0."""
    with pytest.raises(ValueError, match="ideal_cycle_time_s"):
        KpiProfile(ideal_cycle_time_s=0)
