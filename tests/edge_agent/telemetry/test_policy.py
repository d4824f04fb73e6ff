"""Tests for parsing publishing policies from device and tag tables."""

from __future__ import annotations

from typing import Any

import pytest

from edge_agent.configkit import Issues, Table
from edge_agent.telemetry import POLICY_KEYS, PublishMode, PublishPolicy, parse_publish_policy

FILE = "agent.toml"


def table(data: dict[str, Any], path: str = "devices.press1") -> Table:
    return Table(data, path, Issues(FILE))


def messages(t: Table) -> list[str]:
    return [str(issue) for issue in t.issues.items]


def test_policy_keys_are_the_documented_ones() -> None:
    """POLICY_KEYS lists exactly the keys the loader must extract."""
    assert {"publish", "deadband", "deadband_percent", "heartbeat_s", "aggregate_s"} == POLICY_KEYS


def test_device_without_policy_keys_defaults_to_none() -> None:
    """A device table with no policy key yields publish = "none"."""
    t = table({"protocol": "modbus_tcp"})
    assert parse_publish_policy(t, default=None) == PublishPolicy(mode=PublishMode.NONE)
    assert not t.issues.items


def test_tag_without_policy_keys_inherits_device_default() -> None:
    """A tag table with no policy key inherits the device policy unchanged."""
    device = PublishPolicy(mode=PublishMode.CHANGE, deadband=0.5, heartbeat_s=60.0)
    t = table({"address": 3}, "devices.press1.tags.temp")
    assert parse_publish_policy(t, default=device) is device


def test_full_change_policy() -> None:
    """All change keys are read with their values."""
    t = table({"publish": "change", "deadband_percent": 2, "heartbeat_s": 300})
    policy = parse_publish_policy(t, default=None)
    assert policy == PublishPolicy(mode=PublishMode.CHANGE, deadband_percent=2.0, heartbeat_s=300.0)


def test_aggregate_policy() -> None:
    """An aggregate policy carries its window length."""
    t = table({"publish": "aggregate", "aggregate_s": 60})
    assert parse_publish_policy(t, default=None) == PublishPolicy(
        mode=PublishMode.AGGREGATE, aggregate_s=60.0
    )


def test_tag_overrides_key_by_key_within_the_same_mode() -> None:
    """A tag setting only a deadband keeps the device's mode and heartbeat."""
    device = PublishPolicy(mode=PublishMode.CHANGE, deadband_percent=1.0, heartbeat_s=60.0)
    t = table({"deadband": 0.2}, "devices.press1.tags.temp")
    assert parse_publish_policy(t, default=device) == PublishPolicy(
        mode=PublishMode.CHANGE, deadband=0.2, heartbeat_s=60.0
    )


def test_tag_switching_mode_does_not_inherit_parameters() -> None:
    """A tag choosing another mode starts from that mode's defaults."""
    device = PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0)
    t = table({"publish": "change"}, "devices.press1.tags.alarm")
    assert parse_publish_policy(t, default=device) == PublishPolicy(mode=PublishMode.CHANGE)


def test_tag_inherits_aggregate_window() -> None:
    """A tag restating the device's aggregate mode keeps its window length."""
    device = PublishPolicy(mode=PublishMode.AGGREGATE, aggregate_s=10.0)
    t = table({"publish": "aggregate"}, "devices.press1.tags.vib")
    assert parse_publish_policy(t, default=device) == device


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"publish": "sometimes"},
            "agent.toml: devices.press1.publish: expected one of 'none', 'every', 'change', "
            "'aggregate', got a string 'sometimes'",
        ),
        (
            {"publish": "change", "deadband": 1, "deadband_percent": 2},
            "agent.toml: devices.press1.deadband_percent: set either deadband or "
            "deadband_percent, not both",
        ),
        (
            {"publish": "change", "deadband": -1},
            "agent.toml: devices.press1.deadband: expected a number >= 0.0, got an integer -1",
        ),
        (
            {"publish": "change", "heartbeat_s": "60"},
            "agent.toml: devices.press1.heartbeat_s: expected a number >= 0.0, got a string '60'",
        ),
        (
            {"publish": "aggregate"},
            "agent.toml: devices.press1.aggregate_s: missing, expected a number > 0 for publish "
            '= "aggregate"',
        ),
        (
            {"publish": "aggregate", "aggregate_s": 0},
            "agent.toml: devices.press1.aggregate_s: expected a number > 0, got an integer 0",
        ),
        (
            {"publish": "every", "deadband": 1},
            "agent.toml: devices.press1.deadband: only valid with "
            "publish = \"change\", not 'every'",
        ),
        (
            {"publish": "change", "aggregate_s": 5},
            'agent.toml: devices.press1.aggregate_s: only valid with publish = "aggregate", '
            "not 'change'",
        ),
        (
            {"heartbeat_s": 5},
            "agent.toml: devices.press1.heartbeat_s: only valid with "
            "publish = \"change\", not 'none'",
        ),
    ],
)
def test_invalid_policies_name_file_path_and_expectation(
    data: dict[str, Any], expected: str
) -> None:
    """Each mistake is reported with file, dotted key path and expectation, and yields None."""
    t = table(data)
    assert parse_publish_policy(t, default=None) is None
    assert expected in messages(t)


def test_all_mistakes_are_reported_at_once() -> None:
    """Several bad keys in one table produce one issue each."""
    t = table({"publish": "every", "deadband": 1, "heartbeat_s": -2, "aggregate_s": 3})
    assert parse_publish_policy(t, default=None) is None
    paths = sorted(issue.path for issue in t.issues.items)
    assert paths == [
        "devices.press1.aggregate_s",
        "devices.press1.deadband",
        "devices.press1.heartbeat_s",
        "devices.press1.heartbeat_s",
    ]


def test_policy_keys_are_marked_used_other_keys_are_not() -> None:
    """After parsing, finish() flags only keys that are not policy keys."""
    t = table({"publish": "change", "deadband": 1, "heartbeat_s": 5, "bogus": 1})
    assert parse_publish_policy(t, default=None) is not None
    t.finish()
    assert messages(t) == ["agent.toml: devices.press1.bogus: unknown key"]


def test_dataclass_rejects_inconsistent_values() -> None:
    """Building a policy in code enforces the same invariants as the parser."""
    with pytest.raises(ValueError, match="exclusive"):
        PublishPolicy(mode=PublishMode.CHANGE, deadband=1.0, deadband_percent=1.0)
    with pytest.raises(ValueError, match="aggregate_s"):
        PublishPolicy(mode=PublishMode.AGGREGATE)
    with pytest.raises(ValueError, match="heartbeat_s"):
        PublishPolicy(mode=PublishMode.CHANGE, heartbeat_s=-1.0)
