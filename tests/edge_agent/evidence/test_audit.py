"""The config audit record: the file's hash and each machine's profile, round-tripping."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.evidence.audit import config_record, profiles_of
from edge_agent.kpi import KpiProfile, parse_profile, profile_hash

from .month import profile


def test_record_names_file_hash_and_profiles(tmp_path: Path) -> None:
    """The record carries the file's SHA-256 and each machine's profile with its hash."""
    toml = tmp_path / "agent.toml"
    toml.write_text("[agent]\nid = 'gw'\n")
    prof = profile()
    data = config_record(event="reload", config_file=toml, profiles={"press1": prof})
    assert data["event"] == "reload"
    assert data["config_sha256"] == hashlib.sha256(toml.read_bytes()).hexdigest()
    assert data["machines"]["press1"]["profile_hash"] == profile_hash(prof)
    assert profiles_of(data) == {profile_hash(prof): prof.as_json()}
    assert data["contracts"] == {}


def test_profile_json_round_trips_to_the_same_hash() -> None:
    """A verifier rebuilds the profile from the record and gets the hash the records name."""
    for prof in (profile(), KpiProfile(ideal_cycle_time_s=2.0, micro_stop_threshold_s=30.0)):
        issues = Issues("record")
        rebuilt = parse_profile(Table(prof.as_json(), "", issues))
        issues.raise_if_any()
        assert profile_hash(rebuilt) == profile_hash(prof)


def test_a_changed_threshold_changes_the_hash(tmp_path: Path) -> None:
    """A micro-stop threshold changed by a reload is visible in the audit trail."""
    toml = tmp_path / "agent.toml"
    toml.write_text("x")
    before = config_record(
        event="start", config_file=toml, profiles={"m": KpiProfile(ideal_cycle_time_s=2.0)}
    )
    after = config_record(
        event="reload",
        config_file=toml,
        profiles={"m": KpiProfile(ideal_cycle_time_s=2.0, micro_stop_threshold_s=300.0)},
    )
    assert before["machines"]["m"]["profile_hash"] != after["machines"]["m"]["profile_hash"]


def test_unknown_event_is_refused(tmp_path: Path) -> None:
    """Only start and reload exist."""
    with pytest.raises(ValueError, match="event must be one of"):
        config_record(event="boot", config_file=tmp_path / "x", profiles={})
